// Forms that ask first. Inline handlers (onsubmit="...") would need the
// Content-Security-Policy to allow inline script; the forms say what to ask in
// `data-confirm` instead.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target.closest && event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });
})();
