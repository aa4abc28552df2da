// Keeps every "last callback received N s ago" line current without reloading the page.
(function () {
  "use strict";
  const REFRESH_MS = 5000;
  const lines = document.querySelectorAll("[data-callback-status]");
  if (!lines.length) return;

  let lastCallbackAt = null;

  function render() {
    const now = Date.now();
    lines.forEach(function (line) {
      const since = line.dataset.since ? Date.parse(line.dataset.since) : null;
      const arrived = lastCallbackAt !== null && (since === null || lastCallbackAt >= since);
      line.textContent = arrived
        ? line.dataset.received.replace("{seconds}", Math.max(0, Math.round((now - lastCallbackAt) / 1000)))
        : line.dataset.waiting;
    });
  }

  function refresh() {
    fetch("/api/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body) {
          lastCallbackAt = body.lastCallbackAt ? Date.parse(body.lastCallbackAt) : null;
        }
        render();
      })
      .catch(function () { /* offline: try again on the next tick */ });
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
  setInterval(render, 1000);
})();
