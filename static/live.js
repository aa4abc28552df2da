// The live feed: new callbacks pushed over a WebSocket, drawn from the server's own row
// templates. By default one row per message, whose badge changes in place as its news
// arrives; with view=callbacks every callback, with filters and a pause button. The
// connection state and each instance's latest event are always on screen.
// Every word shown comes from data-* attributes the page renders in its own language, or
// from the server's own (translated) answer saying why it refuses the socket.
(function () {
  "use strict";
  const root = document.getElementById("live-feed");
  if (!root || !("WebSocket" in window)) return;
  const byMessage = root.dataset.view === "messages";
  const template = document.getElementById(byMessage ? "message-row" : "delivery-row");
  if (!template) return;

  const MAX_ROWS = 500;
  const FIRST_DELAY_MS = 1000;
  const MAX_DELAY_MS = 30000;
  const JITTER = 0.3;
  const OFFLINE_ALERT_MS = 10000;
  const CHECK_TIMEOUT_MS = 10000; // a stalled check must not stop the next ones
  const COPIED_MS = 2000;
  const CLOSE_POLICY = 1008;

  const text = root.dataset;
  const table = root.querySelector(byMessage ? "[data-message-table]" : "[data-feed-table]");
  const rows = root.querySelector(byMessage ? "[data-message-rows]" : "[data-feed-rows]");
  const empty = root.querySelector("[data-feed-empty]");
  const controls = root.querySelector("[data-feed-controls]");
  const failedOnly = root.querySelector("[data-filter-failed]");
  const typeFilter = root.querySelector("[data-filter-type]");
  const pauseButton = root.querySelector("[data-pause]");
  const heldLine = root.querySelector("[data-held]");
  const connectionLine = root.querySelector("[data-connection]");
  const offlineBanner = root.querySelector("[data-offline-banner]");
  const refusedBanner = root.querySelector("[data-refused-banner]");
  const gapBanner = root.querySelector("[data-gap-banner]");
  const gapText = root.querySelector("[data-gap-text]");
  const announcer = root.querySelector("[data-announcer]");
  const instanceEvents = document.querySelector("[data-instance-events]");
  const columns = table.tHead ? table.tHead.rows[0].cells.length : 5;
  const statusLabels = JSON.parse(template.dataset.statusLabels || "{}");
  const canCopy = Boolean(navigator.clipboard && navigator.clipboard.writeText);

  // -- words and numbers in the page's language ----------------------------------------

  const intl = window.dashboardTime.intl; // static/time.js, loaded first by every page
  const numberFormat = intl(function (locale) { return new Intl.NumberFormat(locale); });
  const pluralRules = intl(function (locale) { return new Intl.PluralRules(locale); });

  // A counted text: data-text-<key>-one or data-text-<key>-other, with {count} filled in.
  function counted(key, count) {
    const form = pluralRules.select(count) === "one" ? "One" : "Other";
    return text[key + form].replace("{count}", numberFormat.format(count));
  }

  // Times: static/time.js, the page's one formatter (local time zone, UTC on hover).
  const times = window.dashboardTime;

  // -- rows ----------------------------------------------------------------------------

  function asText(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  // Z-API's status in the page's words, as the server's status_label filter says it; a
  // status the page has no word for, as it came.
  function statusLabel(status) {
    return Object.hasOwn(statusLabels, status) ? statusLabels[status] : status;
  }

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  // Drop a part of the skeleton this delivery does not use, as _delivery_row.html would.
  function keepIf(element, wanted) {
    if (element && !wanted) element.remove();
  }

  // A live row: the skeleton in <template id="delivery-row">, filled with textContent only.
  function buildRow(delivery) {
    const row = template.content.firstElementChild.cloneNode(true);
    // Only a send fails; an instance event's error (disconnected, proxy) is just its text.
    const hasError = Boolean(delivery.error);
    const failed = hasError && delivery.type === "DeliveryCallback";
    row.dataset.id = String(delivery.id);
    row.dataset.type = asText(delivery.type);
    if (failed) {
      row.dataset.failed = "";
      row.classList.add("delivery-failed");
    }

    row.querySelector("[data-detail-link]").href = "/deliveries/" + delivery.id;
    const time = field(row, "receivedAt");
    time.dateTime = asText(delivery.receivedAt);
    time.textContent = asText(delivery.receivedAt);
    times.localise(time);

    const phone = field(row, "phone");
    phone.dataset.phone = asText(delivery.phone);
    phone.textContent = asText(delivery.phoneDisplay);
    field(row, "type").textContent = asText(delivery.type);
    // Our own message echoed back (fromMe), not the customer's.
    keepIf(row.querySelector('[data-part="from-me"]'), delivery.fromMe === true);

    // Status: a failed send -> "Failed", its code and its text; another error -> its text;
    // else status; else "Handed to WhatsApp".
    keepIf(row.querySelector('[data-part="failed"]'), failed);
    const code = field(row, "errorCode");
    code.textContent = asText(delivery.errorCode);
    keepIf(code, failed && Boolean(delivery.errorCode));
    const error = field(row, "error");
    error.textContent = asText(delivery.error);
    keepIf(error, hasError);
    const status = field(row, "status");
    status.textContent = statusLabel(asText(delivery.status));
    keepIf(status, !hasError && Boolean(delivery.status));
    keepIf(
      row.querySelector('[data-part="handed"]'),
      !hasError && !delivery.status && delivery.type === "DeliveryCallback"
    );

    const messageId = field(row, "messageId");
    const copy = row.querySelector("[data-copy]");
    if (delivery.messageId) {
      messageId.textContent = asText(delivery.messageId);
      if (copy) copy.hidden = !canCopy;
    } else {
      messageId.parentNode.textContent = ""; // no id: no code, no copy button
    }
    return row;
  }

  function deliveryRows() {
    return rows.querySelectorAll("tr.delivery");
  }

  function hasRow(id) {
    return rows.querySelector('tr.delivery[data-id="' + id + '"]') !== null;
  }

  function showTable() {
    table.hidden = false;
    if (empty) empty.hidden = true;
  }

  // At most MAX_ROWS rows: the oldest go, and a divider left with nothing under it too.
  function trim() {
    const all = deliveryRows();
    for (let index = MAX_ROWS; index < all.length; index += 1) all[index].remove();
    const last = rows.lastElementChild;
    if (last && last.classList.contains("feed-divider")) last.remove();
  }

  function insertRow(delivery) {
    const row = buildRow(delivery);
    applyFilters(row);
    rows.prepend(row); // newest on top
    showTable();
    trim();
  }

  // "N deliveries arrived while you were offline", above the rows it speaks of.
  function insertDivider(count) {
    rows.querySelectorAll("tr.feed-divider").forEach(function (old) { old.remove(); });
    const row = document.createElement("tr");
    row.className = "feed-divider";
    const cell = document.createElement("td");
    cell.colSpan = columns;
    cell.textContent = counted("textDivider", count);
    row.appendChild(cell);
    rows.prepend(row);
    showTable();
  }

  // -- message rows --------------------------------------------------------------------

  // A part of a page <template> by its data attribute, e.g. the badge of one state.
  function templatePart(id, attribute, value) {
    const holder = document.getElementById(id);
    if (!holder) return null;
    return Array.from(holder.content.children).find(function (element) {
      return element.getAttribute(attribute) === value;
    }) || null;
  }

  function messageRow(id) {
    return rows.querySelector('tr.message[data-message="' + id + '"]');
  }

  // A failure's label in the page's language; Z-API's own words for one not known here,
  // as the server writes it (messages.verdict.failure_of).
  function failureLabel(message) {
    if (message.state !== "failed") return "";
    const label = templatePart("failure-labels", "data-category", asText(message.failureCategory));
    return label && message.failureCategory !== "other" ? label.textContent : asText(message.error);
  }

  // Fill a message row from a frame's message: a new row, or one already shown, in place.
  function fillMessageRow(row, message) {
    const failed = message.state === "failed";
    row.dataset.message = String(message.id);
    row.dataset.news = String(message.latestDeliveryId);
    row.dataset.state = asText(message.state);
    row.classList.toggle("message-failed", failed);
    const state = field(row, "state");
    const badge = templatePart("state-badges", "data-state-badge", asText(message.state));
    state.textContent = badge ? "" : asText(message.state);
    if (badge) state.appendChild(badge.cloneNode(true));
    field(row, "phone").textContent = asText(message.phoneDisplay);
    field(row, "content").textContent = asText(message.content);
    field(row, "failure").textContent = failureLabel(message);
    row.querySelector("[data-detail-link]").href = "/messages/" + message.id;
    const time = field(row, "latestAt");
    time.dateTime = asText(message.latestAt);
    time.textContent = asText(message.latestAt);
    times.localise(time);
  }

  // A message's news: its row changes in place, or a new row goes on top. A frame read
  // before the one already shown (a late commit, the catch-up) changes nothing.
  function showMessage(message) {
    if (!message || typeof message.id !== "number") return;
    let row = messageRow(message.id);
    if (row && Number(row.dataset.news) > message.latestDeliveryId) return;
    if (!row) {
      row = template.content.firstElementChild.cloneNode(true);
      rows.prepend(row);
    }
    fillMessageRow(row, message);
    showTable();
    const all = rows.querySelectorAll("tr.message");
    for (let index = MAX_ROWS; index < all.length; index += 1) all[index].remove();
  }

  // -- instance events -----------------------------------------------------------------

  // "Instance X disconnected at ...": the latest event of each instance, one line each.
  function showInstanceEvent(delivery) {
    const words = templatePart("instance-event-texts", "data-type", asText(delivery.type));
    if (!words || !instanceEvents) return;
    const instance = asText(delivery.instanceId);
    const old = Array.from(instanceEvents.children).find(function (line) {
      return line.dataset.instance === instance;
    });
    if (old && Number(old.dataset.id) > delivery.id) return; // older news
    const line = document.createElement("li");
    line.className = "instance-event instance-event-" + delivery.type;
    line.dataset.instance = instance;
    line.dataset.id = String(delivery.id);
    const parts = words.textContent.split("{time}");
    const name = instance || "\u2014";
    line.appendChild(document.createTextNode(parts[0].replace("{instance}", name)));
    const time = document.createElement("time");
    time.dateTime = asText(delivery.receivedAt);
    times.localise(time);
    line.appendChild(time);
    const after = parts.slice(1).join("{time}");
    line.appendChild(document.createTextNode(after.replace("{instance}", name)));
    if (old) old.replaceWith(line);
    else instanceEvents.appendChild(line);
    instanceEvents.hidden = false;
  }

  // -- failure counts ------------------------------------------------------------------

  // Each count is how many messages the page knows to stand failed in that category, since
  // the section's data-since: the server lists their ids, and each frame's message moves
  // its own id in or out. A message seen again (a repeat, a reconnect's catch-up) moves
  // nothing, and a frame with older news than one already counted is ignored.
  const failureSection = document.querySelector("[data-failure-counts]");
  const failureLines = failureSection ? failureSection.querySelectorAll("li[data-category]") : [];
  const failuresSince = failureSection ? Date.parse(failureSection.dataset.since) : 0;
  const standing = new Map(); // message id -> category, while it stands failed
  const failureNews = new Map(); // message id -> the latest news counted of it

  failureLines.forEach(function (line) {
    line.dataset.messageIds.split(" ").filter(Boolean).forEach(function (id) {
      standing.set(Number(id), line.dataset.category);
    });
  });

  function failureCategory(message) {
    const failed = message.state === "failed" && Date.parse(message.failedAt) >= failuresSince;
    return failed ? asText(message.failureCategory) || "other" : null;
  }

  function drawFailureCounts() {
    const counts = new Map();
    standing.forEach(function (category) {
      counts.set(category, (counts.get(category) || 0) + 1);
    });
    failureLines.forEach(function (line) {
      const count = counts.get(line.dataset.category) || 0;
      line.hidden = count === 0;
      line.querySelector("[data-count]").textContent = numberFormat.format(count);
    });
    const any = standing.size > 0;
    failureSection.querySelector("[data-failures-found]").hidden = !any;
    failureSection.querySelector("[data-failures-none]").hidden = any;
  }

  function countFailure(message) {
    if (!failureSection || !message || typeof message.id !== "number") return;
    // A message that never failed moves no count: nothing to remember of it.
    if (!message.failureCategory && !standing.has(message.id)) return;
    if ((failureNews.get(message.id) || 0) > message.latestDeliveryId) return; // older news
    failureNews.set(message.id, message.latestDeliveryId);
    const category = failureCategory(message);
    if ((standing.get(message.id) || null) === category) return;
    if (category === null) standing.delete(message.id);
    else standing.set(message.id, category);
    drawFailureCounts();
  }

  // -- filters -------------------------------------------------------------------------

  function matches(row) {
    if (!failedOnly || !typeFilter) return true;
    if (failedOnly.checked && !("failed" in row.dataset)) return false;
    return !typeFilter.value || row.dataset.type === typeFilter.value;
  }

  function applyFilters(row) {
    row.hidden = !matches(row);
  }

  function applyFiltersToAll() {
    deliveryRows().forEach(applyFilters);
  }

  // Types seen on the page join the type filter, in alphabetical order.
  function offerType(type) {
    if (!type || !typeFilter) return;
    const options = Array.from(typeFilter.options).slice(1); // after "All types"
    if (options.some(function (option) { return option.value === type; })) return;
    const option = document.createElement("option");
    option.value = type;
    option.textContent = type;
    const next = options.find(function (other) { return other.value > type; });
    typeFilter.insertBefore(option, next || null);
  }

  // -- pause ---------------------------------------------------------------------------

  let paused = false;
  let held = []; // rows (and dividers) that arrived while paused, oldest first
  let heldCount = 0;

  function showHeld() {
    if (!heldLine) return;
    heldLine.hidden = heldCount === 0;
    heldLine.textContent = heldCount ? counted("textNew", heldCount) : "";
  }

  function hold(item) {
    held.push(item);
    if (held.length > MAX_ROWS + 1) held.shift(); // the table would drop them anyway
    if (item.delivery) heldCount += 1;
    showHeld();
  }

  function show(item) {
    if (item.delivery) insertRow(item.delivery);
    else insertDivider(item.divider);
  }

  function setPaused(value) {
    paused = value;
    if (pauseButton) pauseButton.textContent = paused ? text.textResume : text.textPause;
    if (!paused) {
      const items = held;
      held = [];
      heldCount = 0;
      items.forEach(show);
    }
    showHeld();
  }

  function add(item) {
    if (paused) hold(item);
    else show(item);
  }

  // -- incoming events -----------------------------------------------------------------

  // The highest id seen is where a reconnect resumes. Ids shown are remembered one by one,
  // not as "everything below lastId": on PostgreSQL a lower id can commit, and arrive, late.
  const SEEN_LIMIT = 5000;
  const seen = new Set();
  let lastId = 0;

  function remember(id) {
    seen.add(id);
    if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value);
    lastId = Math.max(lastId, id);
  }

  deliveryRows().forEach(function (row) {
    remember(Number(row.dataset.id) || 0);
  });
  // The newest callback when the page was drawn: the socket's catch-up starts after it.
  lastId = Math.max(lastId, Number(root.dataset.latestId) || 0);

  function receive(delivery) {
    if (!delivery || typeof delivery.id !== "number") return;
    if (seen.has(delivery.id) || hasRow(delivery.id)) return; // never twice
    remember(delivery.id);
    showInstanceEvent(delivery);
    countFailure(delivery.message);
    if (byMessage) {
      showMessage(delivery.message);
      return;
    }
    offerType(asText(delivery.type));
    add({ delivery: delivery });
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (!message || typeof message !== "object") return;
    const data = message.data || {};
    if (message.event === "delivery") {
      receive(data);
    } else if (message.event === "caught-up") {
      healthy();
      if (typeof data.latest === "number") lastId = Math.max(lastId, data.latest);
      if (!byMessage && wasDisconnected && data.count > 0) add({ divider: data.count });
    } else if (message.event === "gap") {
      healthy();
      if (typeof data.latest === "number") lastId = Math.max(lastId, data.latest);
      gapText.textContent = counted("textGap", Number(data.missed) || 0);
      gapBanner.hidden = false;
    }
  }

  // -- connection ----------------------------------------------------------------------

  let socket = null;
  let stopped = false;
  let delay = FIRST_DELAY_MS;
  let failures = 0; // connections in a row that never opened
  let wasDisconnected = false;
  let downSince = null;
  let retryTimer = null;
  let offlineTimer = null;
  let connected = false;
  let checking = false;
  let refused = false; // the server said why it turns the socket away; its alert is up

  function setConnection(state, words) {
    connectionLine.dataset.state = state;
    if (connectionLine.textContent !== words) connectionLine.textContent = words;
  }

  function showOffline() {
    offlineTimer = null;
    if (refused) return; // the refusal's alert already says more than "offline"
    setConnection("offline", text.textOfflineSince.replace("{time}", times.clock(downSince)));
    offlineBanner.textContent = text.textOfflineBanner;
    offlineBanner.hidden = false;
  }

  function healthy() {
    delay = FIRST_DELAY_MS; // only once the server talks: a socket closed at once backs off
  }

  function goToLogin() {
    stop();
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  // The server's reason, already in the page's language; shown as text, never as HTML.
  function showRefusal(message) {
    refused = true;
    refusedBanner.textContent = message;
    refusedBanner.hidden = false;
    offlineBanner.hidden = true;
    setConnection("refused", text.textRefused);
  }

  function clearRefusal() {
    refused = false;
    refusedBanner.hidden = true;
    refusedBanner.textContent = "";
  }

  // The refusal is over but the socket is still down: back to the usual offline lines.
  function showDown() {
    if (offlineTimer === null) showOffline();
    else setConnection("reconnecting", text.textReconnecting);
  }

  function onCheck(answer) {
    if (stopped || connected || !answer || typeof answer !== "object") return;
    if (answer.ok === false && typeof answer.error === "string") {
      showRefusal(answer.error);
    } else if (answer.ok === true && refused) {
      clearRefusal(); // accepted now: the failure was passing; the retries carry on
      showDown();
    }
  }

  // A browser never sees why a handshake failed (signed out, foreign origin, full
  // server): the check endpoint gives the same verdict, in words.
  function diagnose() {
    if (checking) return;
    checking = true;
    const url = "/api/live/check?origin=" + encodeURIComponent(window.location.origin);
    const options = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (window.AbortSignal && AbortSignal.timeout) options.signal = AbortSignal.timeout(CHECK_TIMEOUT_MS);
    fetch(url, options)
      .then(function (response) {
        if (response.status === 401) {
          goToLogin();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(onCheck)
      .catch(function () { /* the server is down: keep trying */ })
      .finally(function () { checking = false; });
  }

  function scheduleReconnect() {
    const jitter = 1 + (Math.random() * 2 - 1) * JITTER;
    retryTimer = window.setTimeout(connect, Math.round(delay * jitter));
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }

  function onOpen() {
    connected = true;
    failures = 0;
    clearRefusal();
    downSince = null;
    window.clearTimeout(offlineTimer);
    offlineTimer = null;
    offlineBanner.hidden = true;
    setConnection("live", text.textLive);
  }

  function onClose(code, opened) {
    if (stopped) return;
    if (code === CLOSE_POLICY) {
      goToLogin(); // the session ended or the account was disabled
      return;
    }
    connected = false;
    wasDisconnected = true;
    failures = opened ? 0 : failures + 1;
    if (downSince === null) {
      downSince = new Date();
      offlineTimer = window.setTimeout(showOffline, OFFLINE_ALERT_MS);
    }
    if (offlineTimer !== null && !refused) setConnection("reconnecting", text.textReconnecting);
    if (failures > 0) diagnose(); // at every attempt that never opened, so the words stay true
    scheduleReconnect();
  }

  function connect() {
    retryTimer = null;
    if (stopped) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + window.location.host + "/ws/deliveries?after=" + lastId;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      onClose(0, false);
      return;
    }
    let opened = false;
    socket = ws;
    ws.addEventListener("open", function () {
      opened = true;
      onOpen();
    });
    ws.addEventListener("message", function (event) {
      if (socket === ws) onMessage(event);
    });
    ws.addEventListener("close", function (event) {
      if (socket !== ws) return;
      socket = null;
      onClose(event.code, opened);
    });
  }

  function stop() {
    stopped = true;
    connected = false;
    window.clearTimeout(retryTimer);
    window.clearTimeout(offlineTimer);
    retryTimer = null;
    offlineTimer = null;
    if (socket) {
      const closing = socket;
      socket = null;
      closing.close();
    }
  }

  // Back online: do not wait out the back-off.
  window.addEventListener("online", function () {
    if (retryTimer !== null) {
      window.clearTimeout(retryTimer);
      connect();
    }
  });
  // Leaving the page: close quietly. Coming back from the back/forward cache: reconnect.
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    stopped = false;
    delay = FIRST_DELAY_MS;
    setConnection("connecting", text.textConnecting);
    connect();
  });

  // -- copy ----------------------------------------------------------------------------

  rows.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const value = field(button.closest("tr"), "messageId");
    if (!value) return;
    if (!button.dataset.label) button.dataset.label = button.textContent;
    navigator.clipboard.writeText(value.textContent).then(function () {
      button.textContent = text.textCopied;
      announcer.textContent = text.textCopied;
      window.setTimeout(function () {
        button.textContent = button.dataset.label;
        announcer.textContent = "";
      }, COPIED_MS);
    }).catch(function () { /* clipboard refused: nothing copied, nothing claimed */ });
  });

  // -- start ---------------------------------------------------------------------------

  root.querySelectorAll("tbody [data-copy]").forEach(function (button) { button.hidden = !canCopy; });
  if (failedOnly) failedOnly.addEventListener("change", applyFiltersToAll);
  if (typeFilter) typeFilter.addEventListener("change", applyFiltersToAll);
  if (pauseButton) pauseButton.addEventListener("click", function () { setPaused(!paused); });
  gapBanner.querySelector("[data-reload]").addEventListener("click", function () {
    window.location.reload();
  });
  applyFiltersToAll(); // the browser may have kept the filters' values across a reload
  controls.hidden = false;
  setConnection("connecting", text.textConnecting);
  connect();
})();
