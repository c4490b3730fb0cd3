// Microblog page scripts: relative dates and the notifications poller.
(function () {
  "use strict";

  // --- Relative dates ("3 minutes ago") in the browser's time zone ---------
  var relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  var exact = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var UNITS = [
    ["year", 31536000], ["month", 2592000], ["week", 604800],
    ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1],
  ];

  function describe(date) {
    var seconds = (date.getTime() - Date.now()) / 1000;
    for (var i = 0; i < UNITS.length; i++) {
      var unit = UNITS[i];
      if (Math.abs(seconds) >= unit[1] || unit[0] === "second") {
        return relative.format(Math.round(seconds / unit[1]), unit[0]);
      }
    }
  }

  function renderTimes(root) {
    (root || document).querySelectorAll("time.relative-time").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      el.textContent = describe(date);
      el.title = exact.format(date) + " (" + el.getAttribute("datetime").replace("T", " ").replace("Z", " UTC") + ")";
    });
  }

  // --- Notifications ---------------------------------------------------------
  // Features register a handler per notification name; the poller calls them.
  var handlers = {};
  var since = 0;
  var IDLE_MS = 10000;
  var BUSY_MS = 1000;
  var fastUntil = 0;

  function on(name, handler) {
    (handlers[name] = handlers[name] || []).push(handler);
  }

  // Poll faster for a while (e.g. while a background task is running).
  function hurry(ms) {
    fastUntil = Math.max(fastUntil, Date.now() + (ms || 60000));
  }

  function poll(url) {
    fetch(url + "?since=" + encodeURIComponent(since), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (notifications) {
        notifications.forEach(function (n) {
          since = Math.max(since, n.timestamp);
          (handlers[n.name] || []).forEach(function (handler) { handler(n.data, n); });
        });
      })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () {
        setTimeout(function () { poll(url); }, Date.now() < fastUntil ? BUSY_MS : IDLE_MS);
      });
  }

  window.microblog = { on: on, hurry: hurry, renderTimes: renderTimes };

  document.addEventListener("DOMContentLoaded", function () {
    renderTimes();
    setInterval(renderTimes, 60000);
    var script = document.querySelector("script[data-notifications-url]");
    if (script) poll(script.getAttribute("data-notifications-url"));
  });
})();
