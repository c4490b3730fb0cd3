// Mentions: the badge in the navigation follows its notification.
(function () {
  "use strict";
  window.microblog.on("unread_mention_count", window.microblog.badge("mention_count"));
})();
