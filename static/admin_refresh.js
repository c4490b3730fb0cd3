// An admin dashboard (jobs, federation): the server renders its body; it is fetched again
// every few seconds while the page is open.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.querySelector("[data-refresh-url]");
    if (!panel) return;
    var url = panel.getAttribute("data-refresh-url");
    var every = parseInt(panel.getAttribute("data-refresh-ms"), 10) || 5000;
    function refresh() {
      window.microblog.fetchFragment(url)
        .then(function (fresh) {
          window.microblog.renderTimes(fresh);
          panel.replaceChildren(fresh);
        })
        .catch(function () { /* keep what is shown; try again next time */ })
        .then(function () { setTimeout(refresh, every); });
    }
    setTimeout(refresh, every);
  });
})();
