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

// --- Background task banners (DESIGN.md §6) -------------------------------------
// Each `.task-banner` in base.html follows its task's `task_progress` notifications:
// the bar moves, then turns into a Download link (or the failure reason), no reload.
(function () {
  "use strict";

  var ACTIVE = { queued: true, running: true };

  function humanSize(size) {
    var units = ["bytes", "KB", "MB", "GB"];
    for (var i = 0; i < units.length; i++) {
      if (size < 1024 || i === units.length - 1) {
        return i === 0 ? size + " bytes" : size.toFixed(1) + " " + units[i];
      }
      size /= 1024;
    }
  }

  function setText(banner, build) {
    var text = banner.querySelector(".task-text");
    text.textContent = "";
    build(text);
  }

  function append(parent, tag, className, content) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (content != null) el.textContent = content;
    parent.appendChild(el);
    return el;
  }

  function showProgress(banner, data) {
    var shown = parseInt(banner.getAttribute("data-progress") || "0", 10);
    var progress = Math.max(shown, data.progress || 0);  // never backwards
    banner.setAttribute("data-progress", String(progress));
    var bar = banner.querySelector(".progress");
    if (bar) {
      bar.setAttribute("aria-valuenow", String(progress));
      bar.querySelector(".progress-bar").style.width = progress + "%";
    }
    var percent = banner.querySelector(".task-percent");
    if (percent) percent.textContent = progress + "%";
    var message = banner.querySelector(".task-message");
    if (message && data.message) message.textContent = data.message;
  }

  function showFinished(banner, data) {
    var bar = banner.querySelector(".progress");
    if (bar) bar.remove();
    var cancel = banner.querySelector(".task-cancel");
    if (cancel) cancel.remove();
    var dismiss = banner.querySelector(".task-dismiss");
    if (dismiss) dismiss.classList.remove("d-none");
    banner.classList.remove("alert-info");
    if (data.status === "done" && data.result_size != null) {
      banner.classList.add("alert-success");
      setText(banner, function (text) {
        text.appendChild(document.createTextNode("Your export is ready — "));
        var link = append(text, "a", "task-download alert-link", "Download");
        link.href = banner.getAttribute("data-download-url");
        append(text, "span", "task-size", " (" + humanSize(data.result_size) + ")");
        if (data.message) append(text, "span", "task-message small d-block", data.message);
      });
    } else if (data.status === "failed") {
      banner.classList.add("alert-danger");
      setText(banner, function (text) {
        text.appendChild(document.createTextNode("Failed: "));
        append(text, "span", "task-message", data.message || "unknown error");
      });
    } else {
      banner.classList.add("alert-secondary");
      setText(banner, function (text) {
        append(text, "span", "task-message", data.message || data.status);
      });
    }
  }

  function update(data) {
    var banner = document.querySelector('.task-banner[data-task-id="' + data.task_id + '"]');
    if (!banner) return;
    banner.setAttribute("data-status", data.status);
    if (ACTIVE[data.status]) {
      showProgress(banner, data);
      window.microblog.hurry();
    } else if (banner.getAttribute("data-finished") !== "1") {
      banner.setAttribute("data-finished", "1");
      showFinished(banner, data);
    }
  }

  window.microblog.on("task_progress", update);

  document.addEventListener("DOMContentLoaded", function () {
    var active = document.querySelectorAll(
      '.task-banner[data-status="queued"], .task-banner[data-status="running"]');
    if (active.length) window.microblog.hurry();
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
