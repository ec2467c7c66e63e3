/*
 * SMTP settings page tools: provider presets, "Test connection", "Send test email".
 *
 * A button POSTs (with the page's CSRF token) and gets back a run and its status URL at
 * once; the script then polls that URL every second and shows pending, then the outcome,
 * without a reload. Server text is shown with textContent only, never as HTML. The
 * password field's value is posted only to the test endpoint (which encrypts it at once)
 * and never written anywhere on the page. No framework.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var GIVE_UP_MS = 180000;

  var tools = document.getElementById("smtp-tools");
  if (!tools) {
    return;
  }
  var form = tools.closest("form");
  var statusBox = document.getElementById("smtp-test-status");
  var buttons = [
    document.getElementById("smtp-test-connection"),
    document.getElementById("smtp-send-test-email"),
  ];

  function csrfToken() {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function setBusy(busy) {
    buttons.forEach(function (button) {
      button.disabled = busy;
    });
  }

  function paragraph(className, text) {
    var p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    statusBox.appendChild(p);
  }

  function show(state, summary, hint, timings) {
    statusBox.setAttribute("data-status", state);
    statusBox.textContent = "";
    paragraph("smtp-test-summary", summary);
    if (hint) {
      paragraph("smtp-test-hint", hint);
    }
    if (timings) {
      paragraph("smtp-test-timings help", timings);
    }
  }

  function showRun(run) {
    show(run.status, run.summary, run.hint, run.timings);
  }

  function showErrors(data) {
    if (data.errors) {
      var lines = Object.keys(data.errors).map(function (field) {
        var name = field === "__all__" ? "" : field.replace(/_/g, " ") + ": ";
        return name + data.errors[field].join(" ");
      });
      show("error", "Fix these first:", lines.join("\n"), "");
    } else {
      show("error", data.error || "The request failed.", "", "");
    }
  }

  function poll(url, started) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json();
      })
      .then(function (run) {
        showRun(run);
        if (run.status !== "pending") {
          setBusy(false);
        } else if (Date.now() - started > GIVE_UP_MS) {
          show("error", "No result yet. Is a Celery worker running?", "", "");
          setBusy(false);
        } else {
          window.setTimeout(poll, POLL_MS, url, started);
        }
      })
      .catch(function () {
        window.setTimeout(poll, POLL_MS * 3, url, started);
      });
  }

  function start(url, body) {
    setBusy(true);
    show("pending", "Starting the test…", "", "");
    fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(function (data) {
          return { code: response.status, data: data };
        });
      })
      .then(function (reply) {
        if (reply.code === 202) {
          showRun(reply.data);
          if (reply.data.status === "pending") {
            window.setTimeout(poll, POLL_MS, reply.data.status_url, Date.now());
          } else {
            setBusy(false);
          }
        } else {
          showErrors(reply.data);
          setBusy(false);
        }
      })
      .catch(function () {
        show("error", "The request failed: check the network and try again.", "", "");
        setBusy(false);
      });
  }

  buttons[0].addEventListener("click", function () {
    // Everything on screen, saved or not: the server validates it as the form would.
    start(tools.getAttribute("data-test-connection-url"), new FormData(form));
  });

  buttons[1].addEventListener("click", function () {
    var body = new FormData();
    body.append("smtp_test_recipient", document.getElementById("smtp-test-recipient").value);
    start(tools.getAttribute("data-send-test-email-url"), body);
  });

  // -- presets ---------------------------------------------------------------------------
  var presetSelect = document.getElementById("smtp-preset");
  var presetNote = document.getElementById("smtp-preset-note");
  var presets = JSON.parse(presetSelect.getAttribute("data-presets") || "{}");
  var serverRow = form.querySelector(".field-smtp_server");
  if (serverRow) {
    // Next to the fields it fills, rather than at the bottom of the page.
    serverRow.parentNode.insertBefore(document.getElementById("smtp-preset-row"), serverRow);
  }

  function setField(name, value) {
    var field = document.getElementById("id_" + name);
    if (field) {
      field.value = value;
      field.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  presetSelect.addEventListener("change", function () {
    var preset = presets[presetSelect.value];
    if (!preset) {
      return;
    }
    setField("smtp_server", preset.server);
    setField("smtp_port", String(preset.port));
    setField("smtp_security", preset.security);
    presetNote.textContent = preset.note;
  });
})();
