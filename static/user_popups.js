// User popups: hover or focus a username for a small profile card.
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
      cache[url] = window.microblog.fetchText(url);
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
    card.setAttribute("aria-label", name ? name.getAttribute("data-username") : window.microblog.text("user"));
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
    window.microblog.postForm(form)
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
