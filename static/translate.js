// "Translate" under a post written in another language.
// The server sends the post's own text (named by its id) to the translation service; the
// answer replaces the text in place, and a failure is said where the link is, in the
// page's language (the server's message, or ours when the server could not be reached).
(function () {
  "use strict";
  var text = window.microblog.text;

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
