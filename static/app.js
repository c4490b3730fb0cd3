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
  // Poll intervals come from the server (data attributes), so tests can shorten them.
  var settings = document.currentScript.dataset;
  var IDLE_MS = parseInt(settings.pollIdleMs, 10) || 10000;
  var BUSY_MS = parseInt(settings.pollBusyMs, 10) || 1000;
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

  // Avatars come from Gravatar; on a server without internet access show a local picture.
  function avatarFallback(img) {
    if (!img.classList.contains("avatar") || img.dataset.fallback) return;
    img.dataset.fallback = "1";
    img.src = document.querySelector("script[data-avatar-fallback]").getAttribute("data-avatar-fallback");
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
    var script = document.querySelector("script[data-notifications-url]");
    if (script) poll(script.getAttribute("data-notifications-url"));
  });
})();

// --- Background task banners ------------------------------------------------------
// The server renders each banner (templates/_task_banner.html); when a task's
// `task_progress` notification arrives, the script fetches that banner again and swaps
// it in, so the page and a reload always say the same thing.
(function () {
  "use strict";

  var loading = {};  // task id -> true while its banner is being fetched
  var again = {};    // task id -> a newer notification arrived during the fetch

  function container() {
    return document.getElementById("task-banners");
  }

  function bannerFor(taskId) {
    return document.querySelector('.task-banner[data-task-id="' + taskId + '"]');
  }

  function bannerUrl(taskId) {
    var base = container().getAttribute("data-banner-base").replace("TASK_ID", encodeURIComponent(taskId));
    return base + "?next=" + encodeURIComponent(location.pathname + location.search);
  }

  function refresh(taskId) {
    if (loading[taskId]) { again[taskId] = true; return; }
    loading[taskId] = true;
    fetch(bannerUrl(taskId), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("banner " + response.status);
        return response.text();
      })
      .then(function (html) {
        var old = bannerFor(taskId);
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.firstElementChild;
        // An empty answer: the task no longer has a banner (dismissed, or long finished).
        if (!fresh) { if (old) old.remove(); return; }
        if (old) old.replaceWith(fresh); else container().appendChild(fresh);
        if (fresh.hasAttribute("data-active")) window.microblog.hurry();
      })
      .catch(function () { /* try again with the next notification */ })
      .then(function () {
        loading[taskId] = false;
        if (again[taskId]) { again[taskId] = false; refresh(taskId); }
      });
  }

  function update(data) {
    if (container()) refresh(data.task_id);
  }

  window.microblog.on("task_progress", update);

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector(".task-banner[data-active]")) window.microblog.hurry();
  });
})();

// --- Unread private messages badge ------------------------------------------------
(function () {
  "use strict";
  window.microblog.on("unread_message_count", function (count) {
    var badge = document.getElementById("message_count");
    if (!badge) return;
    badge.textContent = String(count);
    badge.classList.toggle("d-none", !count);
  });
})();

// --- User popups: hover a username or avatar for a small profile card -------------
// The card is an HTML fragment rendered (and escaped) by the server, fetched once per user
// and kept for the life of the page. Plain JS rather than Bootstrap's popover, whose
// sanitizer would strip the follow form.
(function () {
  "use strict";
  var SHOW_DELAY_MS = 300;
  var HIDE_DELAY_MS = 250;
  var cache = {};  // popup URL -> Promise of the fragment's HTML
  var card = null;
  var anchor = null;
  var showTimer = null;
  var hideTimer = null;

  function load(url) {
    if (!cache[url]) {
      cache[url] = fetch(url, { credentials: "same-origin" }).then(function (response) {
        if (!response.ok) throw new Error("popup " + response.status);
        return response.text();
      });
      cache[url].catch(function () { delete cache[url]; });  // retry on the next hover
    }
    return cache[url];
  }

  function ensureCard() {
    if (card) return card;
    card = document.createElement("div");
    card.className = "user-popup card card-body shadow";
    card.setAttribute("role", "dialog");
    card.hidden = true;
    card.addEventListener("mouseenter", function () { clearTimeout(hideTimer); });
    card.addEventListener("mouseleave", scheduleHide);
    card.addEventListener("submit", followFromCard);
    document.body.appendChild(card);
    return card;
  }

  function place(link) {
    var box = link.getBoundingClientRect();
    card.style.left = Math.max(8, window.scrollX + box.left) + "px";
    card.style.top = window.scrollY + box.bottom + 6 + "px";
  }

  function show(link) {
    var url = link.getAttribute("data-user-popup");
    load(url).then(function (html) {
      if (anchor !== link) return;  // the pointer moved on meanwhile
      ensureCard();
      card.innerHTML = html;
      card.setAttribute("data-url", url);
      window.microblog.renderTimes(card);
      place(link);
      card.hidden = false;
    }).catch(function () { /* no card for this user: nothing to show */ });
  }

  function scheduleHide() {
    clearTimeout(hideTimer);
    hideTimer = setTimeout(function () {
      anchor = null;
      if (card) card.hidden = true;
    }, HIDE_DELAY_MS);
  }

  // Follow/unfollow without leaving the page; the form still works without JavaScript.
  function followFromCard(event) {
    var form = event.target.closest("form.user-popup-follow");
    if (!form) return;
    event.preventDefault();
    var url = card.getAttribute("data-url");
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function () {
        delete cache[url];
        return load(url);
      })
      .then(function (html) {
        if (card.getAttribute("data-url") === url) card.innerHTML = html;
        window.microblog.renderTimes(card);
      })
      .catch(function () { form.submit(); });
  }

  document.addEventListener("mouseover", function (event) {
    var link = event.target.closest && event.target.closest("[data-user-popup]");
    if (!link) return;
    clearTimeout(hideTimer);
    if (anchor === link && card && !card.hidden) return;
    anchor = link;
    clearTimeout(showTimer);
    showTimer = setTimeout(function () { if (anchor === link) show(link); }, SHOW_DELAY_MS);
  });

  document.addEventListener("mouseout", function (event) {
    var link = event.target.closest && event.target.closest("[data-user-popup]");
    if (!link || link.contains(event.relatedTarget)) return;
    clearTimeout(showTimer);
    scheduleHide();
  });
})();

// --- Forms that ask first, and messages marked read once shown ----------------------------
// Inline handlers (onsubmit="...") would need the Content-Security-Policy to allow inline
// script; the forms say what to ask in `data-confirm` instead.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target.closest && event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Reading /messages changes nothing by itself (a link from another site must not clear the
  // badge); the page, once shown, says that these messages have been seen.
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("mark-read");
    if (!form) return;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (result) {
        if (!result) return;
        form.hidden = true;
        var badge = document.getElementById("message_count");
        if (badge) {
          badge.textContent = String(result.unread);
          badge.classList.toggle("d-none", !result.unread);
        }
      })
      .catch(function () { /* the button still works */ });
  });
})();

// --- Admin jobs dashboard: the server renders its body; refresh it while the page is open ---
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.querySelector("[data-refresh-url]");
    if (!panel) return;
    var url = panel.getAttribute("data-refresh-url");
    var every = parseInt(panel.getAttribute("data-refresh-ms"), 10) || 5000;
    function refresh() {
      fetch(url, { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("dashboard " + response.status);
          return response.text();
        })
        .then(function (html) {
          panel.innerHTML = html;
          window.microblog.renderTimes(panel);
        })
        .catch(function () { /* keep what is shown; try again next time */ })
        .then(function () { setTimeout(refresh, every); });
    }
    setTimeout(refresh, every);
  });
})();
