// Your new picture, everywhere on the page, once the worker has made it. Every image of the
// signed-in user's picture carries data-avatar-user; when their picture task is done, the
// server says the new URL for each size shown, and the images switch.
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
