// Record forms: the field rules' state from the server applied as the user types,
// lookups chosen from a list of the records the user may read, and possible duplicates.
(function () {
  "use strict";

  // Ask the server for the rules' state only when a field they read has changed.
  function changed(form, name) {
    var watched = (form.getAttribute("data-watch") || "").split(" ");
    if (watched.indexOf(name) < 0) { return; }
    form.dispatchEvent(new CustomEvent("form-changed", { bubbles: false }));
  }

  // Once the user leaves a field a duplicate rule compares, ask for possible duplicates.
  function leftField(form, name) {
    var watched = (form.getAttribute("data-duplicate-watch") || "").split(" ");
    var check = form.querySelector("[data-duplicate-check]");
    if (check && watched.indexOf(name) >= 0) {
      check.dispatchEvent(new CustomEvent("duplicate-check", { bubbles: false }));
    }
  }

  function applyState(form, state) {
    form.querySelectorAll("[data-field]").forEach(function (box) {
      var name = box.getAttribute("data-field");
      var hidden = state.hidden.indexOf(name) >= 0;
      var readOnly = state.read_only.indexOf(name) >= 0;
      var required = !hidden && (state.required.indexOf(name) >= 0 || box.hasAttribute("data-static-required"));
      var allowed = Object.prototype.hasOwnProperty.call(state.allowed_values, name) ? state.allowed_values[name] : null;
      box.hidden = hidden;
      if (box.classList.contains("static")) { return; }
      box.toggleAttribute("data-rule-readonly", readOnly);
      box.toggleAttribute("data-rule-required", required);
      box.querySelectorAll("input, select, textarea").forEach(function (control) {
        control.disabled = hidden || readOnly;
        if (control.type !== "hidden" && control.type !== "checkbox") {
          if (required) { control.setAttribute("aria-required", "true"); }
          else { control.removeAttribute("aria-required"); }
        }
      });
      var marker = box.querySelector("[data-required]");
      if (marker) { marker.hidden = !required; }
      box.querySelectorAll("option").forEach(function (option) {
        option.disabled = allowed !== null && option.value !== "" && allowed.indexOf(option.value) < 0;
      });
    });
  }

  function readState(holder) {
    try { return JSON.parse(holder.getAttribute("data-state")); } catch (e) { return null; }
  }

  // ---- lookups: an accessible combobox over a listbox the server fills ----
  function options(list) {
    return Array.prototype.slice.call(list.querySelectorAll("[role=option]:not([aria-disabled])"));
  }

  function close(input, list) {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function choose(input, list, option) {
    var box = input.closest("[data-field]");
    var value = box.querySelector("[data-lookup-value]");
    value.value = option.getAttribute("data-id");
    input.value = option.getAttribute("data-name");
    close(input, list);
    changed(input.closest("form.record-form"), value.name);
  }

  function move(input, list, step) {
    var all = options(list);
    if (!all.length) { return; }
    if (list.hidden) { list.hidden = false; input.setAttribute("aria-expanded", "true"); }
    var current = all.findIndex(function (o) { return o.getAttribute("aria-selected") === "true"; });
    var next = (current + step + all.length) % all.length;
    all.forEach(function (o, i) { o.setAttribute("aria-selected", i === next ? "true" : "false"); });
    input.setAttribute("aria-activedescendant", all[next].id);
    all[next].scrollIntoView({ block: "nearest" });
  }

  function setUpLookup(input) {
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var box = input.closest("[data-field]");
    var value = box.querySelector("[data-lookup-value]");
    input.addEventListener("input", function () {
      value.value = "";  // typed text is a search, not a choice
      changed(input.closest("form.record-form"), value.name);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown") { event.preventDefault(); move(input, list, 1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); move(input, list, -1); }
      else if (event.key === "Escape") { close(input, list); }
      else if (event.key === "Enter" && !list.hidden) {
        var selected = list.querySelector("[aria-selected=true]:not([aria-disabled])");
        if (selected) { event.preventDefault(); choose(input, list, selected); }
      }
    });
    input.addEventListener("blur", function () { window.setTimeout(function () { close(input, list); }, 150); });
    list.addEventListener("mousedown", function (event) {
      var option = event.target.closest("[role=option]:not([aria-disabled])");
      if (option) { event.preventDefault(); choose(input, list, option); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form.record-form");
    if (!form) { return; }
    form.addEventListener("input", function (event) {
      if (event.target.name && event.target.form === form) { changed(form, event.target.name); }
    });
    form.addEventListener("change", function (event) {
      if (event.target.name && event.target.form === form) {
        changed(form, event.target.name);
        leftField(form, event.target.name);
      }
    });
    // "Save anyway" (the duplicates panel): the same form again, past warn rules.
    document.addEventListener("click", function (event) {
      if (!event.target.closest("[data-save-anyway]")) { return; }
      form.querySelector("[data-allow-duplicates]").value = "1";
      form.submit();
    });
    form.querySelectorAll("input[role=combobox]").forEach(setUpLookup);
    var summary = document.getElementById("form-summary") || document.getElementById("form-stale") ||
      document.getElementById("form-duplicates-panel");
    if (summary) { summary.setAttribute("tabindex", "-1"); summary.focus(); }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.getAttribute && target.getAttribute("role") === "listbox") {
      var input = document.querySelector("[aria-controls='" + target.id + "']");
      options(target).forEach(function (option, i) { option.id = target.id + "-" + i; });
      if (input && document.activeElement === input) {
        target.hidden = false;
        input.setAttribute("aria-expanded", "true");
      }
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    var holder = document.getElementById("form-state");
    var form = document.querySelector("form.record-form");
    if (!holder || !form || holder.getAttribute("data-applied") === "1") { return; }
    holder.setAttribute("data-applied", "1");
    var state = readState(holder);
    if (!state) { return; }
    if (state.layout && state.layout !== form.getAttribute("data-layout")) {
      // The draft is of another record type: draw its layout, keeping what was typed.
      form.querySelector("[data-redraw]").value = "1";
      form.submit();
      return;
    }
    applyState(form, state);
    form.setAttribute("data-state-version", String(Number(form.getAttribute("data-state-version") || "0") + 1));
  });
})();
