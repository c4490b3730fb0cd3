// Microblog's page script, the part every page needs: the colour theme, the strings in the
// page's language, relative dates, the notifications poller and the few helpers the
// feature scripts share (one small file per feature, loaded after this one).
// Loaded in the <head>, not deferred: the theme is picked before the page is drawn.

// --- Light or dark, as the system says (Bootstrap colour modes) ---------------------
(function () {
  "use strict";
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    document.documentElement.setAttribute("data-bs-theme", dark.matches ? "dark" : "light");
  }
  apply();
  dark.addEventListener("change", apply);
})();

(function () {
  "use strict";
  var script = document.currentScript;

  // --- What the script says, in the page's language ----------------------------------
  // The server renders the strings onto this script's tag (data-strings), so the scripts
  // hold no text of their own; `text("key", {name: value})` fills `%(name)s` placeholders.
  var strings = {};
  try { strings = JSON.parse(script.getAttribute("data-strings") || "{}"); }
  catch (error) { strings = {}; }
  function text(key, values) {
    return String(strings[key] || key).replace(/%\((\w+)\)[sd]/g, function (whole, name) {
      return values && name in values ? String(values[name]) : whole;
    });
  }

  // --- Relative dates ("3 minutes ago") in the browser's time zone, the page's language ---
  var language = document.documentElement.lang || undefined;
  var relative = new Intl.RelativeTimeFormat(language, { numeric: "auto" });
  var exact = new Intl.DateTimeFormat(language, { dateStyle: "medium", timeStyle: "short" });
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
  var tickHandlers = [];
  var since = 0;
  // Poll intervals come from the server (data attributes), so tests can shorten them.
  var IDLE_MS = parseInt(script.dataset.pollIdleMs, 10) || 10000;
  var BUSY_MS = parseInt(script.dataset.pollBusyMs, 10) || 1000;
  var fastUntil = 0;

  function on(name, handler) {
    (handlers[name] = handlers[name] || []).push(handler);
  }

  // Run `handler` after every poll, for page parts that follow something no notification
  // announces (new posts by the people you follow, the worker coming back).
  function every(handler) {
    tickHandlers.push(handler);
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
        tickHandlers.forEach(function (handler) { handler(); });
      })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () {
        setTimeout(function () { poll(url); }, Date.now() < fastUntil ? BUSY_MS : IDLE_MS);
      });
  }

  // --- What the features share ------------------------------------------------------
  // The HTML the server renders at `url`: the one way a script asks for a page part
  // (nothing is rendered twice in JS). Fails for an answer that is not a 2xx.
  function fetchText(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error(url + " " + response.status);
      return response.text();
    });
  }

  // That HTML as elements, ready to be put in the page.
  function fetchFragment(url) {
    return fetchText(url).then(function (html) {
      var template = document.createElement("template");
      template.innerHTML = html.trim();
      return template.content;
    });
  }

  // Send `form` (its fields, CSRF token included) in the background; `options` are
  // fetch's, added to the POST. The forms all work without the script too.
  function postForm(form, options) {
    var request = { method: "POST", body: new FormData(form), credentials: "same-origin" };
    Object.keys(options || {}).forEach(function (key) { request[key] = options[key]; });
    return fetch(form.action, request);
  }

  // The unread messages badge in the navbar: the one place that sets it.
  // An updater for the count badge with this id: hidden at zero.
  function badge(id) {
    return function (count) {
      var element = document.getElementById(id);
      if (!element) return;
      element.textContent = String(count);
      element.classList.toggle("d-none", !count);
    };
  }

  window.microblog = {
    text: text, on: on, every: every, hurry: hurry, renderTimes: renderTimes,
    fetchText: fetchText, fetchFragment: fetchFragment, postForm: postForm,
    badge: badge,
  };

  // Avatars come from Gravatar; on a server without internet access show a local picture.
  function avatarFallback(img) {
    if (!img.classList.contains("avatar") || img.dataset.fallback) return;
    img.dataset.fallback = "1";
    img.src = script.getAttribute("data-avatar-fallback");
  }
  document.addEventListener("error", function (event) {
    if (event.target.tagName === "IMG") avatarFallback(event.target);
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    // Images that failed before this script ran fired their error event unseen.
    document.querySelectorAll("img.avatar").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0) avatarFallback(img);
    });
    renderTimes();
    setInterval(renderTimes, 60000);
    var url = script.getAttribute("data-notifications-url");
    if (url) poll(url);
  });
})();
