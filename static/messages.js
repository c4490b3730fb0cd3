// Private messages: the unread badge follows its notification; on /messages a message that
// arrives while the page is open appears at the top, and the page says which messages it
// has shown (reading /messages changes nothing by itself: a link from another site must
// not clear the badge).
(function () {
  "use strict";
  var microblog = window.microblog;

  microblog.on("unread_message_count", microblog.badge("message_count"));

  // The shown messages are read up to the newest one; the answer says what is left unread.
  function markShownMessagesRead() {
    var form = document.getElementById("mark-read");
    if (!form) return;
    var newest = document.querySelector("#message-list [data-sent-at]");
    if (!newest) return;
    form.querySelector("[name=up_to]").value = newest.getAttribute("data-sent-at");
    microblog.postForm(form, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (result) {
        if (!result) return;
        form.hidden = true;
        microblog.badge("message_count")(result.unread);
      })
      .catch(function () { /* the button still works */ });
  }

  var fetchingMessages = false;
  microblog.on("unread_message_count", function (count) {
    var list = document.getElementById("message-list");
    if (!count || !list || !list.hasAttribute("data-newer-url") || fetchingMessages) return;
    var newest = list.querySelector("[data-message-id]");
    var after = newest ? newest.getAttribute("data-message-id") : "0";
    fetchingMessages = true;
    microblog.fetchFragment(list.getAttribute("data-newer-url") + "?after=" + after)
      .then(function (fresh) {
        if (!fresh.firstElementChild) return;
        var placeholder = list.querySelector(".no-messages");
        if (placeholder) placeholder.remove();
        microblog.renderTimes(fresh);
        list.prepend(fresh);
        markShownMessagesRead();
      })
      .catch(function () { /* shown on the next notification or a reload */ })
      .then(function () { fetchingMessages = false; });
  });

  document.addEventListener("DOMContentLoaded", markShownMessagesRead);
})();
