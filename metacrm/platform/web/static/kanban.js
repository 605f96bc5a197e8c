// metacrm workspace: the kanban board. Cards move by drag and drop or by their "Move to"
// form; either way the server moves the record (stage gates apply) and answers with the
// card drawn afresh and every column's new figures, or with the reasons it refused.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function laneOf(board, value) {
    var lanes = board.querySelectorAll(".kanban-lane");
    for (var i = 0; i < lanes.length; i++) {
      if (lanes[i].getAttribute("data-value") === value) { return lanes[i]; }
    }
    return null;
  }

  function showAlert(content) {
    var region = document.getElementById("kanban-alert");
    region.replaceChildren();
    if (content) { region.appendChild(content); }
  }

  function say(text) {
    var status = document.getElementById("kanban-status");
    if (status) { status.textContent = text; }
  }

  function move(board, card, lane, refocus, reason) {
    var form = card.querySelector("form.kanban-move");
    if (!form || card.getAttribute("aria-busy") === "true") { return; }
    var to = lane.getAttribute("data-value");
    var body = new URLSearchParams();
    body.set("to", to);
    body.set("field", board.getAttribute("data-field"));
    body.set("version", card.getAttribute("data-version"));
    if (reason) { body.set("reason", reason); }
    card.setAttribute("aria-busy", "true");
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-CSRF-Token": csrfToken(),
        "HX-Request": "true"
      },
      body: body.toString()
    }).then(function (response) {
      return response.text().then(function (text) { return { response: response, text: text }; });
    }).then(function (answer) {
      var redirect = answer.response.headers.get("HX-Redirect");
      if (answer.response.status === 401 && redirect) { window.location.assign(redirect); return; }
      var template = document.createElement("template");
      template.innerHTML = answer.text;
      card.removeAttribute("aria-busy");
      if (!answer.response.ok) {
        // Refused: the card stays where it was; every reason is shown.
        showAlert(template.content);
        return;
      }
      var fresh = template.content.querySelector(".kanban-card");
      var list = lane.querySelector(".kanban-cards");
      // The card drawn afresh (its new version); none if the user may no longer read it.
      card.remove();
      if (fresh) { list.insertBefore(fresh, list.firstChild); }
      template.content.querySelectorAll(".kanban-figures").forEach(function (figures) {
        var old = document.getElementById(figures.id);
        if (old) { old.replaceWith(figures); }
      });
      showAlert(null);
      var moved = template.content.querySelector("[data-moved-to]");
      var label = moved ? moved.getAttribute("data-moved-to") : to;
      say((board.getAttribute("data-moved") || "").replace("{to}", label));
      if (fresh && refocus) {
        var select = fresh.querySelector("select[name=to]");
        if (select) { select.focus(); }
      }
    }).catch(function () {
      card.removeAttribute("aria-busy");
      var p = document.createElement("p");
      p.className = "alert";
      p.setAttribute("role", "alert");
      p.textContent = board.getAttribute("data-network-error");
      showAlert(p);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var board = document.getElementById("kanban");
    if (!board) { return; }
    var dragged = null;

    board.addEventListener("dragstart", function (event) {
      var card = event.target.closest && event.target.closest(".kanban-card");
      if (!card) { return; }
      dragged = card;
      card.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", card.getAttribute("data-id"));
    });
    board.addEventListener("dragend", function () {
      if (dragged) { dragged.classList.remove("dragging"); }
      dragged = null;
      board.querySelectorAll(".drop-target").forEach(function (lane) {
        lane.classList.remove("drop-target");
      });
    });
    board.addEventListener("dragover", function (event) {
      var lane = event.target.closest && event.target.closest(".kanban-lane");
      if (!lane || !dragged) { return; }
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      board.querySelectorAll(".drop-target").forEach(function (other) {
        if (other !== lane) { other.classList.remove("drop-target"); }
      });
      lane.classList.add("drop-target");
    });
    board.addEventListener("drop", function (event) {
      var lane = event.target.closest && event.target.closest(".kanban-lane");
      if (!lane || !dragged) { return; }
      event.preventDefault();
      lane.classList.remove("drop-target");
      var card = dragged;
      if (card.closest(".kanban-lane") !== lane) { move(board, card, lane, false); }
    });
    // The keyboard way: each card's "Move to" form.
    board.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.matches || !form.matches("form.kanban-move")) { return; }
      event.preventDefault();
      var card = form.closest(".kanban-card");
      var lane = laneOf(board, form.querySelector("select[name=to]").value);
      if (!card || !lane) { return; }
      if (card.closest(".kanban-lane") === lane) { return; }
      move(board, card, lane, true);
    });
    // A move refused for want of a reason: the alert asks for one and moves again.
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.matches || !form.matches("form.kanban-reason")) { return; }
      event.preventDefault();
      var card = document.getElementById("kanban-card-" + form.getAttribute("data-card"));
      var lane = laneOf(board, form.querySelector("input[name=to]").value);
      var reason = form.querySelector("input[name=reason]").value.trim();
      if (!card || !lane || !reason) { return; }
      move(board, card, lane, true, reason);
    });
  });
})();
