// List pages: the filter builder writes an expression into the filter box; select all rows.
(function () {
  "use strict";

  function quote(text) {
    return JSON.stringify(String(text));
  }

  function literal(kind, value) {
    var v = value.trim();
    if (kind === "number" || kind === "currency" || kind === "percent") {
      return /^-?\d+(\.\d+)?$/.test(v) ? v : quote(v);
    }
    if (kind === "boolean") {
      return /^(true|yes|1|是)$/i.test(v) ? "True" : "False";
    }
    if (kind === "date") { return "DATEVALUE(" + quote(v) + ")"; }
    if (kind === "datetime") { return "DATETIMEVALUE(" + quote(v) + ")"; }
    return quote(v);
  }

  function expression(name, kind, op, value) {
    if (op === "empty") { return "ISBLANK(" + name + ")"; }
    if (op === "not_empty") { return "NOT(ISBLANK(" + name + "))"; }
    if (kind === "multi_picklist") {
      var has = "INCLUDES(" + name + ", " + quote(value.trim()) + ")";
      return op === "ne" ? "NOT(" + has + ")" : has;
    }
    if (op === "contains") {
      return "CONTAINS(" + name + ", " + quote(value) + ")";
    }
    var ops = { eq: "==", ne: "!=", lt: "<", gt: ">", le: "<=", ge: ">=" };
    return name + " " + ops[op] + " " + literal(kind, value);
  }

  function setUpBuilder() {
    var builder = document.getElementById("builder");
    var where = document.getElementById("where");
    if (!builder || !where) { return; }
    var fields = {};
    try {
      JSON.parse(builder.getAttribute("data-fields") || "[]").forEach(function (f) { fields[f.name] = f; });
    } catch (e) { return; }
    var field = document.getElementById("builder-field");
    var op = document.getElementById("builder-op");
    var value = document.getElementById("builder-value");
    var choices = document.getElementById("builder-choices");
    function refresh() {
      var f = fields[field.value] || { choices: [] };
      choices.textContent = "";
      f.choices.forEach(function (c) {
        var option = document.createElement("option");
        option.value = c.value;
        option.label = c.label;
        choices.appendChild(option);
      });
      value.type = f.kind === "date" ? "date" : "text";
      var noValue = op.value === "empty" || op.value === "not_empty";
      value.disabled = noValue;
    }
    field.addEventListener("change", refresh);
    op.addEventListener("change", refresh);
    document.getElementById("builder-add").addEventListener("click", function () {
      var f = fields[field.value];
      if (!f) { return; }
      var part = expression(f.name, f.kind, op.value, value.value);
      var current = where.value.trim();
      where.value = current ? current + " and " + part : part;
      where.focus();
    });
    builder.hidden = false;
    refresh();
  }

  function setUpSelectAll() {
    var all = document.querySelector("[data-select-all]");
    if (!all) { return; }
    var boxes = document.querySelectorAll("input[name=ids]");
    if (!boxes.length) { return; }
    all.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpBuilder();
    setUpSelectAll();
  });
})();
