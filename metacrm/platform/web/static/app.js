// metacrm workspace: the few behaviours the shell needs; pages add their own files.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
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
