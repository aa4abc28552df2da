// Every <time datetime="..."> on the page in the reader's own time zone and the page's
// language, with the UTC time kept on hover. The server writes each time in UTC (readable
// without JavaScript); this script rewrites the text, on load and for every element added
// later (the live feed's rows, or anything else a script puts on the page).
// window.dashboardTime is the one formatter the other scripts use.
(function () {
  "use strict";
  const language = document.documentElement.lang || undefined;

  function intl(make) {
    try {
      return make(language);
    } catch (error) {
      return make(undefined); // an unknown language tag: the browser's own
    }
  }

  // The time zone's short name ends the text, so nobody mistakes it for UTC.
  const dateTimeFormat = intl(function (locale) {
    return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "long" });
  });
  const clockFormat = intl(function (locale) {
    return new Intl.DateTimeFormat(locale, { timeStyle: "medium" });
  });

  // "2026-04-29 14:05:09 UTC", the title the server writes.
  function utcTitle(date) {
    return date.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  // One <time>: local text, UTC title. Remembers what it did, so a second pass is free.
  function localiseTime(time) {
    const value = time.getAttribute("datetime");
    if (!value || time.dataset.localised === value) return;
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return;
    time.dataset.localised = value;
    time.textContent = dateTimeFormat.format(date);
    time.title = utcTitle(date);
  }

  // Every <time datetime> in root (an element or the document), root itself included.
  function localise(root) {
    const scope = root || document;
    if (scope.matches && scope.matches("time[datetime]")) localiseTime(scope);
    scope.querySelectorAll("time[datetime]").forEach(localiseTime);
  }

  window.dashboardTime = {
    localise: localise,
    // A formatter of Intl's for the page's language, e.g. intl((locale) => new
    // Intl.NumberFormat(locale)); the browser's own language if the page's is unknown.
    intl: intl,
    // A clock time such as "14:05:09", for words like "Offline since {time}".
    clock: function (date) { return clockFormat.format(date); },
  };

  function start() {
    localise(document);
    // Rows added later, and a <time> whose datetime a script changes in place.
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        if (change.type === "attributes") localiseTime(change.target);
        change.addedNodes.forEach(function (node) {
          if (node.nodeType === Node.ELEMENT_NODE) localise(node);
        });
      });
    }).observe(document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ["datetime"],
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
