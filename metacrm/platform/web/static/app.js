// metacrm workspace: the few behaviours the shell needs; pages add their own files.
(function () {
  "use strict";
  // Instants drawn in UTC by the server (values.display, data-local) shown in the reader's
  // time zone, in the page's language.
  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (element) {
      var when = new Date(element.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      element.textContent = when.toLocaleString(document.documentElement.lang || undefined,
        { dateStyle: "medium", timeStyle: "short" });
      element.title = element.getAttribute("datetime");
      element.removeAttribute("data-local");
    });
  }
  document.addEventListener("htmx:afterSettle", function (event) {
    localTimes(event.detail && event.detail.elt ? event.detail.elt : document);
  });
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    // The phone menu.
    document.querySelectorAll("[data-toggle]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-toggle"));
        var open = target.classList.toggle("open");
        button.setAttribute("aria-expanded", open ? "true" : "false");
      });
    });
    // Selects that apply at once (the language switch).
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    // Mark the navigation entry of the page being shown.
    var path = window.location.pathname;
    document.querySelectorAll(".sidebar a").forEach(function (link) {
      var href = link.getAttribute("href");
      if (href === path || (href !== "/app" && path.indexOf(href + "/") === 0)) {
        link.setAttribute("aria-current", "page");
      }
    });
  });
})();
