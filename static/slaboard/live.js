// Live screens: countdowns tick in the browser, the websocket heals itself, staleness shows.
//
// htmx's ws extension swaps pushed fragments by id. It reconnects by itself only after close
// codes 1006/1011/1012/1013, so this file also reconnects after any other close, and a
// watchdog reconnects when the socket falls silent. The server sends each board group a
// heartbeat every 15 s unless a push reached it during that period, so any message counts:
// two periods (+ 5 s) without one means pushes are not arriving.
(function () {
  "use strict";

  var live = document.querySelector("[data-heartbeat]");
  var HEARTBEAT_MS = 1000 * parseFloat((live && live.getAttribute("data-heartbeat")) || "15");
  var STALE_AFTER_MS = 2 * HEARTBEAT_MS + 5000;
  var lastMessage = Date.now();
  var lastUpdate = Date.now();
  var staleSince = null;
  var socket = null; // htmx's wrapper: .reconnect() opens a new WebSocket
  var rawSocket = null; // the WebSocket itself
  var retries = 0;

  // Reconnect quickly at first, never slower than every 10 s, with jitter.
  if (window.htmx) {
    htmx.config.wsReconnectDelay = function (retryCount) {
      return Math.min(10000, 500 * Math.pow(2, retryCount)) * (0.5 + Math.random() / 2);
    };
  }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }

  function clock(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  function formatLeft(ms) {
    var overdue = ms < 0;
    var s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var text;
    if (h >= 24) { text = Math.floor(h / 24) + " d " + (h % 24) + " h"; }
    else if (h > 0) { text = h + " h " + pad(m) + " m"; }
    else { text = m + ":" + pad(sec); }
    return overdue ? "−" + text : text;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) { return; }
      el.textContent = formatLeft(due - now);
      el.classList.toggle("overdue", due <= now);
    });
    document.querySelectorAll("[data-ago]").forEach(function (el) {
      var s = Math.max(0, Math.round((now - lastUpdate) / 1000));
      el.textContent = s < 90 ? s + " s" : Math.round(s / 60) + " min";
    });
    if (document.querySelector("[data-live]") && now - lastMessage > STALE_AFTER_MS) {
      markStale("no heartbeat");
      reconnect();
    }
  }

  function setConn(state, text) {
    var el = document.getElementById("conn");
    if (!el) { return; }
    el.className = "conn " + state;
    el.textContent = text;
    document.body.classList.toggle("stale", state !== "live");
  }

  function markStale(reason) {
    if (staleSince === null) { staleSince = new Date(lastUpdate); }
    setConn("stale", "⚠ Reconnecting… stale since " + clock(staleSince));
    document.body.setAttribute("data-stale-reason", reason);
  }

  function reconnect() {
    lastMessage = Date.now(); // one attempt per stale period; the watchdog retries after that
    if (rawSocket && rawSocket.readyState === WebSocket.OPEN) {
      rawSocket.close(4000, "stale"); // a silent socket: close it; wsClose reconnects
      return;
    }
    if (socket && socket.reconnect) {
      retries += 1;
      setTimeout(socket.reconnect, Math.min(10000, 500 * Math.pow(2, retries)));
    } else {
      window.location.reload();
    }
  }

  document.addEventListener("htmx:wsOpen", function (evt) {
    socket = evt.detail.socketWrapper;
    rawSocket = evt.detail.event && evt.detail.event.target;
    retries = 0;
    lastMessage = Date.now();
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    lastMessage = Date.now();
    lastUpdate = lastMessage;
    if (staleSince !== null || document.body.classList.contains("stale")) {
      staleSince = null;
      setConn("live", "● Live");
    }
    tick();
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    markStale("connection closed");
    var code = evt.detail.event && evt.detail.event.code;
    if ([1006, 1011, 1012, 1013].indexOf(code) < 0) {
      if (code === 4403) {
        setConn("stale", "⚠ Not allowed: this link was revoked or you were logged out");
        return;
      }
      reconnect(); // htmx does not retry after 1000/1001: we do
    }
  });

  document.addEventListener("htmx:wsError", function () { markStale("connection error"); });

  // The queue fragment is shared by all agents of a scope; mark the rows this agent holds.
  function markMine() {
    var me = document.body.getAttribute("data-user");
    document.querySelectorAll("[data-claimed-by]").forEach(function (row) {
      row.classList.toggle("mine", !!me && row.getAttribute("data-claimed-by") === me);
    });
  }
  document.addEventListener("htmx:wsAfterMessage", markMine);
  document.addEventListener("DOMContentLoaded", markMine);

  // Show refusals (409 taken, 403 not yours, 400 bad input) in the toast instead of dropping them.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var status = evt.detail.xhr.status;
    if (status === 400 || status === 403 || status === 409) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  tick();
  setInterval(tick, 1000);
})();
