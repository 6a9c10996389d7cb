// A board opened without a login: a kiosk link carries its secret after "#" (never sent to
// any server, so never in a log). Post it once to exchange it for a cookie; without one, go
// to the login page.
(function () {
  "use strict";
  var form = document.getElementById("kiosk-form");
  if (!form) { return; }
  var match = /(?:^#|&)kiosk=([^&]+)/.exec(window.location.hash);
  if (match) {
    form.elements.token.value = decodeURIComponent(match[1]);
    // Keep the secret off the screen and out of the history.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    form.submit();
  } else if (!form.hasAttribute("data-problem")) {
    window.location.replace(form.getAttribute("data-login"));
  }
})();
