// Character counters on the post and message boxes.
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
    var text = window.microblog.text;
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
