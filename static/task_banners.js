// Background task banners. The server renders each banner (templates/_task_banner.html);
// when a task's `task_progress` notification arrives, the script fetches that banner again
// and swaps it in, so the page and a reload always say the same thing. A banner's Cancel
// button sends its form in the background, and the task history (/tasks) follows too.
(function () {
  "use strict";
  var microblog = window.microblog;
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
    microblog.fetchFragment(bannerUrl(taskId))
      .then(function (fragment) {
        var old = bannerFor(taskId);
        var fresh = fragment.firstElementChild;
        // An empty answer: the task no longer has a banner (dismissed, or long finished).
        if (!fresh) { if (old) old.remove(); return; }
        if (old) old.replaceWith(fresh); else container().appendChild(fresh);
        if (fresh.hasAttribute("data-active")) microblog.hurry();
      })
      .catch(function () { /* try again with the next notification */ })
      .then(function () {
        loading[taskId] = false;
        if (again[taskId]) { again[taskId] = false; refresh(taskId); }
      });
  }

  microblog.on("task_progress", function (data) {
    if (container()) refresh(data.task_id);
  });

  // The task history (/tasks): its rows are fetched again, as rendered there.
  microblog.on("task_progress", function () {
    var rows = document.querySelector(".task-history tbody");
    if (!rows) return;
    microblog.fetchFragment(location.pathname + location.search).then(function (page) {
      var fresh = page.querySelector(".task-history tbody");
      if (!fresh) return;
      microblog.renderTimes(fresh);
      rows.replaceWith(fresh);
    }).catch(function () { /* the next notification tries again */ });
  });

  // "The worker is not running" can stop being true while the task is still queued (the
  // worker is back but busy): ask again after each poll while a banner says it.
  microblog.every(function () {
    document.querySelectorAll(".task-banner .worker-missing").forEach(function (warning) {
      refresh(warning.closest(".task-banner").getAttribute("data-task-id"));
    });
  });

  // Cancel from a banner, staying on the page: the task's next notification redraws it.
  // Without the script the form comes back to this page.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest && event.target.closest(".task-banner form.task-cancel");
    if (!form || event.defaultPrevented) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    // "manual": the redirect back to this page is not followed (nothing is rendered twice).
    microblog.postForm(form, { redirect: "manual" })
      .then(function (response) {
        var done = response.ok || response.type === "opaqueredirect";
        if (!done) throw new Error("cancel " + response.status);
        microblog.hurry();
      })
      .catch(function () { form.submit(); });
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector(".task-banner[data-active]")) microblog.hurry();
  });
})();
