// Microblog page scripts: colour theme, relative dates and the notifications poller.
// Loaded in the <head>: anything that touches the page waits for DOMContentLoaded.

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

// --- What the script says, in the page's language ----------------------------------
// The server renders the strings onto this script's tag (data-strings), so the script
// holds no text of its own; `text("key", {name: value})` fills `%(name)s` placeholders.
(function () {
  "use strict";
  var strings = {};
  try { strings = JSON.parse(document.currentScript.getAttribute("data-strings") || "{}"); }
  catch (error) { strings = {}; }
  window.microblogText = function (key, values) {
    return String(strings[key] || key).replace(/%\((\w+)\)[sd]/g, function (whole, name) {
      return values && name in values ? String(values[name]) : whole;
    });
  };
})();

(function () {
  "use strict";

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
  var settings = document.currentScript.dataset;
  var IDLE_MS = parseInt(settings.pollIdleMs, 10) || 10000;
  var BUSY_MS = parseInt(settings.pollBusyMs, 10) || 1000;
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

  // A fragment of server-rendered HTML, as elements (nothing is rendered twice in JS).
  function fetchFragment(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error(url + " " + response.status);
      return response.text();
    }).then(function (html) {
      var template = document.createElement("template");
      template.innerHTML = html.trim();
      return template.content;
    });
  }

  window.microblog = {
    on: on, every: every, hurry: hurry, renderTimes: renderTimes, fetchFragment: fetchFragment,
  };

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

  // The task history (/tasks) follows too: its rows are fetched again, as rendered there.
  window.microblog.on("task_progress", function () {
    var rows = document.querySelector(".task-history tbody");
    if (!rows) return;
    window.microblog.fetchFragment(location.pathname + location.search).then(function (page) {
      var fresh = page.querySelector(".task-history tbody");
      if (!fresh) return;
      window.microblog.renderTimes(fresh);
      rows.replaceWith(fresh);
      rows = fresh;
    }).catch(function () { /* the next notification tries again */ });
  });

  // "The worker is not running" can stop being true while the task is still queued (the
  // worker is back but busy): ask again after each poll while a banner says it.
  window.microblog.every(function () {
    document.querySelectorAll(".task-banner .worker-missing").forEach(function (warning) {
      refresh(warning.closest(".task-banner").getAttribute("data-task-id"));
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector(".task-banner[data-active]")) window.microblog.hurry();
  });
})();

// --- Cancel a task from its banner, staying on the page ---------------------------------
// The form still works without the script (it comes back to this page); with it, the
// request goes in the background and the task's next notification redraws the banner.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target.closest && event.target.closest(".task-banner form.task-cancel");
    if (!form || event.defaultPrevented) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    // "manual": the redirect back to this page is not followed (nothing is rendered twice).
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      redirect: "manual",
    })
      .then(function (response) {
        var done = response.ok || response.type === "opaqueredirect";
        if (!done) throw new Error("cancel " + response.status);
        window.microblog.hurry();
      })
      .catch(function () { form.submit(); });
  });
})();

// --- Your new picture, everywhere on the page, once the worker has made it ---------------
// Every image of the signed-in user's picture carries data-avatar-user; when their picture
// task is done, the server says the new URL for each size shown, and the images switch.
(function () {
  "use strict";

  function swapAvatars(script) {
    var selector = 'img[data-avatar-user="' + script.getAttribute("data-avatar-user") + '"]';
    var sizes = {};
    document.querySelectorAll(selector).forEach(function (img) {
      sizes[img.getAttribute("width")] = true;
    });
    var query = Object.keys(sizes).map(function (size) {
      return "size=" + encodeURIComponent(size);
    }).join("&");
    if (!query) return;
    fetch(script.getAttribute("data-avatar-urls") + "?" + query, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("avatar urls " + response.status);
        return response.json();
      })
      .then(function (urls) {
        // Asked again: images added meanwhile (a user card) switch too.
        document.querySelectorAll(selector).forEach(function (img) {
          var fresh = urls[img.getAttribute("width")];
          if (!fresh || img.getAttribute("src") === fresh) return;
          delete img.dataset.fallback;  // the new picture deserves its own chance to load
          img.src = fresh;
        });
      })
      .catch(function () { /* a reload shows it */ });
  }

  window.microblog.on("task_progress", function (data) {
    var script = document.querySelector("script[data-avatar-urls]");
    if (script && data.name === "process_avatar" && data.status === "done") swapAvatars(script);
  });
})();

// --- Unread private messages and mentions badges --------------------------------
(function () {
  "use strict";
  function badgeFor(id) {
    return function (count) {
      var badge = document.getElementById(id);
      if (!badge) return;
      badge.textContent = String(count);
      badge.classList.toggle("d-none", !count);
    };
  }
  window.microblog.on("unread_message_count", badgeFor("message_count"));
  window.microblog.on("unread_mention_count", badgeFor("mention_count"));
})();

// --- Live page parts: the server renders them, the script swaps them in -------------
(function () {
  "use strict";

  // A profile's counts and follow button, after a follow from a user card on the page.
  document.addEventListener("microblog:following", function () {
    var header = document.getElementById("profile-header");
    if (!header) return;
    window.microblog.fetchFragment(header.getAttribute("data-header-url")).then(function (fresh) {
      var current = document.getElementById("profile-header");
      var element = fresh.firstElementChild;
      if (!current || !element) return;
      current.replaceWith(element);
      window.microblog.renderTimes(element);
    }).catch(function () { /* the next follow or a reload will tell */ });
  });

  // /messages: a message that arrives while the page is open appears at the top.
  var fetchingMessages = false;
  window.microblog.on("unread_message_count", function (count) {
    var list = document.getElementById("message-list");
    if (!count || !list || !list.hasAttribute("data-newer-url") || fetchingMessages) return;
    var newest = list.querySelector("[data-message-id]");
    var after = newest ? newest.getAttribute("data-message-id") : "0";
    fetchingMessages = true;
    window.microblog.fetchFragment(list.getAttribute("data-newer-url") + "?after=" + after)
      .then(function (fresh) {
        if (!fresh.firstElementChild) return;
        var placeholder = list.querySelector(".no-messages");
        if (placeholder) placeholder.remove();
        window.microblog.renderTimes(fresh);
        list.prepend(fresh);
        window.microblog.markShownMessagesRead();
      })
      .catch(function () { /* shown on the next notification or a reload */ })
      .then(function () { fetchingMessages = false; });
  });

  // Home: "3 new posts" when people you follow post while the timeline is open.
  window.microblog.every(function () {
    var notice = document.getElementById("new-posts");
    if (!notice) return;
    window.microblog.fetchFragment(notice.getAttribute("data-new-posts-url")).then(function (fresh) {
      notice.replaceChildren(fresh);
    }).catch(function () { /* ask again after the next poll */ });
  });
})();

// --- Character counters on the post and message boxes -------------------------------
// The box has no maxlength (it would cut pasted text without a word); the counter says
// how much is left, or how much too long it is, and the server refuses an over-long text.
(function () {
  "use strict";
  // Characters as the server counts them (models.text_length): code points, not UTF-16
  // units (an emoji is one), and a line break one, although the form sends it as CRLF.
  function characters(text) {
    return Array.from(text.replace(/\r\n?/g, "\n")).length;
  }
  function update(box) {
    var limit = parseInt(box.getAttribute("data-maxlength"), 10);
    var counter = document.getElementById(box.getAttribute("aria-describedby"));
    var left = limit - characters(box.value);
    var text = window.microblogText;
    counter.textContent = left >= 0
      ? text("charsLeft", { left: left, limit: limit })
      : text(left === -1 ? "tooManyOne" : "tooManyOther", { over: -left, limit: limit });
    counter.classList.toggle("text-danger", left < 0);
    // Only undo our own mark: a message from the server (say "Write something first.")
    // stays until the form is sent again.
    if (left < 0) { box.classList.add("is-invalid"); box.setAttribute("data-too-long", ""); }
    else if (box.hasAttribute("data-too-long")) {
      box.classList.remove("is-invalid");
      box.removeAttribute("data-too-long");
    }
  }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-maxlength]")) update(event.target);
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-maxlength]").forEach(update);
  });
})();

// --- User popups: hover or focus a username for a small profile card ----------------
// The card is an HTML fragment rendered (and escaped) by the server, fetched once per user
// and kept for the life of the page. Plain JS rather than Bootstrap's popover, whose
// sanitizer would strip the follow form. The card is placed right after the link in the
// document, so that Tab goes from the name into the card; Escape closes it.
(function () {
  "use strict";
  var SHOW_DELAY_MS = 300;
  var HIDE_DELAY_MS = 250;
  var MARGIN = 8;
  var cache = {};  // popup URL -> Promise of the fragment's HTML
  var card = null;
  var anchor = null;
  var showTimer = null;
  var hideTimer = null;
  var quiet = null;  // the link Escape just sent the focus back to: do not reopen on it

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

  // Once the signed-in user's new picture is made, cards loaded before show the old one.
  window.microblog.on("task_progress", function (data) {
    if (data.name === "process_avatar" && data.status === "done") cache = {};
  });

  function ensureCard() {
    if (card) return card;
    card = document.createElement("div");
    card.className = "user-popup card card-body shadow";
    card.setAttribute("role", "dialog");
    card.hidden = true;
    card.addEventListener("mouseenter", function () { clearTimeout(hideTimer); });
    card.addEventListener("mouseleave", scheduleHide);
    card.addEventListener("submit", followFromCard);
    card.addEventListener("focusout", leaveByKeyboard);
    return card;
  }

  // Below the link, moved left as far as needed to stay inside the window.
  function place(link) {
    var box = link.getBoundingClientRect();
    var origin = (card.offsetParent || document.documentElement).getBoundingClientRect();
    var left = Math.min(box.left, document.documentElement.clientWidth - card.offsetWidth - MARGIN);
    card.style.left = Math.max(MARGIN, left) - origin.left + "px";
    card.style.top = box.bottom + 6 - origin.top + "px";
  }

  function fill(html) {
    card.innerHTML = html;
    window.microblog.renderTimes(card);
    var name = card.querySelector("[data-username]");
    card.setAttribute("aria-label", name ? name.getAttribute("data-username") : window.microblogText("user"));
  }

  function show(link) {
    var url = link.getAttribute("data-user-popup");
    load(url).then(function (html) {
      if (anchor !== link) return;  // the pointer or the focus moved on meanwhile
      ensureCard();
      if (card.previousElementSibling !== link) link.after(card);
      fill(html);
      card.setAttribute("data-url", url);
      card.hidden = false;
      place(link);
      link.setAttribute("aria-expanded", "true");
    }).catch(function () { /* no card for this user: nothing to show */ });
  }

  function hide() {
    clearTimeout(showTimer);
    if (anchor) anchor.removeAttribute("aria-expanded");
    anchor = null;
    if (card) card.hidden = true;
  }

  function scheduleHide() {
    clearTimeout(hideTimer);
    hideTimer = setTimeout(hide, HIDE_DELAY_MS);
  }

  function open(link) {
    clearTimeout(hideTimer);
    if (anchor === link && card && !card.hidden) return;
    if (anchor && anchor !== link) hide();
    anchor = link;
    clearTimeout(showTimer);
    showTimer = setTimeout(function () { if (anchor === link) show(link); }, SHOW_DELAY_MS);
  }

  // Focus left the card for somewhere that is neither the card nor its link: close it.
  function leaveByKeyboard(event) {
    var to = event.relatedTarget;
    if (to && (card.contains(to) || to === anchor)) return;
    if (to) hide();
  }

  // Follow/unfollow without leaving the page; the form still works without JavaScript.
  function followFromCard(event) {
    var form = event.target.closest("form.user-popup-follow");
    if (!form) return;
    event.preventDefault();
    var url = card.getAttribute("data-url");
    var username = card.querySelector("[data-username]").getAttribute("data-username");
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function () {
        delete cache[url];
        return load(url);
      })
      .then(function (html) {
        var hadFocus = card.contains(document.activeElement);
        if (card.getAttribute("data-url") === url) fill(html);
        if (hadFocus) {
          var button = card.querySelector("form.user-popup-follow button");
          if (button) button.focus();
        }
        document.dispatchEvent(new CustomEvent("microblog:following", { detail: { username: username } }));
      })
      .catch(function () { form.submit(); });
  }

  function popupLink(event) {
    return event.target.closest && event.target.closest("[data-user-popup]");
  }

  document.addEventListener("mouseover", function (event) {
    var link = popupLink(event);
    if (link) open(link);
  });

  document.addEventListener("mouseout", function (event) {
    var link = popupLink(event);
    if (!link || link.contains(event.relatedTarget)) return;
    if (card && card.contains(event.relatedTarget)) return;
    clearTimeout(showTimer);
    scheduleHide();
  });

  document.addEventListener("focusin", function (event) {
    var link = popupLink(event);
    if (link && link === quiet) { quiet = null; return; }
    if (link) open(link);
  });

  document.addEventListener("focusout", function (event) {
    var link = popupLink(event);
    if (!link || (card && card.contains(event.relatedTarget))) return;
    hide();
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !card || card.hidden) return;
    var back = card.contains(document.activeElement) ? anchor : null;
    hide();
    if (back) { quiet = back; back.focus({ preventScroll: true }); }
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
  // badge); the page, once shown, says that these messages have been seen — and again when
  // newer ones have been added to it.
  function markShownMessagesRead() {
    var form = document.getElementById("mark-read");
    if (!form) return;
    var newest = document.querySelector("#message-list [data-sent-at]");
    if (!newest) return;
    form.querySelector("[name=up_to]").value = newest.getAttribute("data-sent-at");
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
  }
  window.microblog.markShownMessagesRead = markShownMessagesRead;
  document.addEventListener("DOMContentLoaded", markShownMessagesRead);
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

// --- "Translate" under a post written in another language ---------------------------
// The server sends the post's own text (named by its id) to the translation service; the
// answer replaces the text in place, and a failure is said where the link is, in the
// page's language (the server's message, or ours when the server could not be reached).
(function () {
  "use strict";
  var text = window.microblogText;

  function say(box, message, failed) {
    var status = box.querySelector(".translate-status");
    status.textContent = message;
    status.classList.toggle("text-danger", failed);
    status.classList.toggle("text-body-secondary", !failed);
  }

  function translated(response) {
    return response.json().catch(function () { return {}; }).then(function (result) {
      if (!response.ok || typeof result.text !== "string") {
        throw { shown: result.message || text("translationUnavailable") };
      }
      return result;
    });
  }

  function translate(button) {
    var box = button.closest(".post-translate");
    var body = document.getElementById(button.getAttribute("aria-controls"));
    button.disabled = true;
    say(box, text("translating"), false);
    fetch(button.getAttribute("data-translate-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": button.getAttribute("data-csrf-token"),
      },
      body: JSON.stringify({ post_id: parseInt(button.getAttribute("data-post-id"), 10) }),
    })
      .then(translated)
      .then(function (result) {
        body.textContent = result.text;
        body.setAttribute("lang", result.language);
        button.hidden = true;
        say(box, text("translated"), false);
      })
      .catch(function (failure) {
        button.disabled = false;  // another try may work
        say(box, (failure && failure.shown) || text("translationUnavailable"), true);
      });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".translate-button");
    if (button) translate(button);
  });
})();
