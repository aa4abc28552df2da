// Reveal or copy the webhook URL on request, so its secret token is not in the page's HTML.
(function () {
  "use strict";
  const target = document.querySelector("[data-webhook-url]");
  const csrf = document.querySelector("input[name=csrf_token]");
  if (!target || !csrf) return;

  function fetchUrl(endpoint) {
    return fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf.value, Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (body) { return body.url; });
  }

  document.querySelectorAll("[data-reveal-url]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      fetchUrl(button.dataset.revealUrl).then(function (url) { target.textContent = url; });
    });
  });
  document.querySelectorAll("[data-copy-url]").forEach(function (button) {
    button.hidden = !navigator.clipboard;
    button.addEventListener("click", function () {
      fetchUrl(button.dataset.copyUrl).then(function (url) { return navigator.clipboard.writeText(url); });
    });
  });
})();
