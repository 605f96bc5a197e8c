// The approval inbox: a refusal of a decision (the server names where) is drawn, not dropped.
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var source = detail.requestConfig && detail.requestConfig.elt;
    if (!source || !source.closest || !source.closest("[data-inbox]")) { return; }
    var status = detail.xhr.status;
    if (status >= 400 && detail.xhr.getResponseHeader("HX-Retarget")) {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    // After an item leaves, keep the keyboard in the list: focus the next item's heading link.
    var source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!source || !source.closest || event.detail.xhr.status >= 400) { return; }
    var notice = document.getElementById("inbox-notice");
    if (notice && !document.body.contains(source)) {
      var next = document.querySelector(".inbox-item h3 a, .inbox-item button");
      if (next) { next.focus(); }
    }
  });
})();
