// Page parts the server renders again while the page is open: a profile's header after a
// follow from a user card, and "3 new posts" on the home page when people you follow post.
(function () {
  "use strict";
  var microblog = window.microblog;

  document.addEventListener("microblog:following", function () {
    var header = document.getElementById("profile-header");
    if (!header) return;
    microblog.fetchFragment(header.getAttribute("data-header-url")).then(function (fresh) {
      var current = document.getElementById("profile-header");
      var element = fresh.firstElementChild;
      if (!current || !element) return;
      current.replaceWith(element);
      microblog.renderTimes(element);
    }).catch(function () { /* the next follow or a reload will tell */ });
  });

  microblog.every(function () {
    var notice = document.getElementById("new-posts");
    if (!notice) return;
    microblog.fetchFragment(notice.getAttribute("data-new-posts-url")).then(function (fresh) {
      notice.replaceChildren(fresh);
    }).catch(function () { /* ask again after the next poll */ });
  });
})();
