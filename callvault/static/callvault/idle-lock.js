// The idle lock in the page. While the person uses the keyboard or mouse, a light ping at
// most once a minute tells the server they are there (the server locks idle sessions by
// itself; this only keeps an active person's session open and shows the lock in time).
// After the idle time without activity the page is covered and asks for the password.
// Settings come from <body data-idle-seconds data-idle-ping-url>; the lock's markup
// (translated, with its CSRF token) from <template id="idle-lock-template">.
(function () {
  "use strict";
  var body = document.body;
  var idleSeconds = parseInt(body.getAttribute("data-idle-seconds") || "", 10);
  var pingUrl = body.getAttribute("data-idle-ping-url");
  var template = document.getElementById("idle-lock-template");
  if (!idleSeconds || !pingUrl || !template) {
    return;
  }
  var PING_EVERY_MS = 60 * 1000;
  var CHECK_EVERY_MS = 5 * 1000;
  var lastActivity = Date.now();
  var lastPing = Date.now(); // loading the page was a request
  var locked = false;

  function csrfToken() {
    // The token comes from the lock form's own hidden field (rendered with the page).
    var input = template.content.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function lock() {
    if (locked) {
      return;
    }
    locked = true;
    var overlay = template.content.firstElementChild.cloneNode(true);
    overlay.id = "idle-lock";
    body.appendChild(overlay);
    body.classList.add("idle-locked");
    var field = overlay.querySelector("input[type=password]");
    if (field) {
      field.focus();
    }
  }

  function ping() {
    lastPing = Date.now();
    fetch(pingUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() },
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload(); // the session ended: show the login page
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data && data.locked) {
          lock(); // locked by the server (another tab was idle longer, or the clock)
        }
      })
      .catch(function () {});
  }

  function activity() {
    if (locked) {
      return;
    }
    lastActivity = Date.now();
    if (lastActivity - lastPing >= PING_EVERY_MS) {
      ping();
    }
  }

  ["keydown", "mousemove", "mousedown", "wheel", "touchstart", "scroll"].forEach(function (name) {
    document.addEventListener(name, activity, { passive: true, capture: true });
  });
  setInterval(function () {
    if (!locked && Date.now() - lastActivity >= idleSeconds * 1000) {
      lock();
    }
  }, CHECK_EVERY_MS);
})();
