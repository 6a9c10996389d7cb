// Live screens: countdowns and colours tick in the browser, pushed fragments replace their
// namesakes without taking focus away, the websocket heals itself, staleness shows.
//
// htmx's ws extension delivers the pushes; this file swaps them itself (each element replaces
// the element with the same id, unless the agent is using it: then it waits until focus
// leaves it). htmx reconnects by itself only after close codes 1006/1011/1012/1013, so this
// file also reconnects after any other close, and a watchdog reconnects when the socket
// falls silent: the server sends each group a heartbeat every 15 s unless a push reached it,
// so two periods (+ 5 s) without any message means pushes are not arriving.
(function () {
  "use strict";

  var live = document.querySelector("[data-heartbeat]");
  var HEARTBEAT_MS = 1000 * parseFloat((live && live.getAttribute("data-heartbeat")) || "15");
  var STALE_AFTER_MS = 2 * HEARTBEAT_MS + 5000;
  var zoneHolder = document.querySelector("[data-zone]");
  var ZONE = zoneHolder ? zoneHolder.getAttribute("data-zone") : undefined;
  var ICONS = { green: "✓", yellow: "!", orange: "▲", red: "✖" };
  var lastMessage = Date.now();
  var lastUpdate = Date.now();
  var staleSince = null;
  var socket = null; // htmx's wrapper: .reconnect() opens a new WebSocket
  var rawSocket = null; // the WebSocket itself
  var retries = 0;
  var pending = {}; // id -> element waiting for the agent to leave the one it replaces

  // Reconnect quickly at first, never slower than every 10 s, with jitter.
  if (window.htmx) {
    htmx.config.wsReconnectDelay = function (retryCount) {
      return Math.min(10000, 500 * Math.pow(2, retryCount)) * (0.5 + Math.random() / 2);
    };
  }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }

  // A time as the board reads it: in the board's zone when it has one.
  var clockFormat = (function () {
    try {
      return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: ZONE });
    } catch (e) {
      return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
    }
  })();
  function clock(date) { return clockFormat.format(date); }

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

  // A running clock's colour follows from its stored instants, as on the server.
  function bucketAt(el, now) {
    var due = Date.parse(el.getAttribute("data-due-at"));
    var orange = Date.parse(el.getAttribute("data-orange-at"));
    var yellow = Date.parse(el.getAttribute("data-yellow-at"));
    if (!isNaN(due) && now >= due) { return "red"; }
    if (!isNaN(orange) && now >= orange) { return "orange"; }
    if (!isNaN(yellow) && now >= yellow) { return "yellow"; }
    return "green";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) { return; }
      el.textContent = formatLeft(due - now);
      el.classList.toggle("overdue", due <= now);
    });
    document.querySelectorAll("[data-due-at]").forEach(function (el) {
      var bucket = bucketAt(el, now);
      if (el.classList.contains("b-" + bucket)) { return; }
      el.classList.remove("b-green", "b-yellow", "b-orange", "b-red");
      el.classList.add("b-" + bucket);
      var icon = el.querySelector(".icon");
      if (icon) { icon.textContent = ICONS[bucket]; }
    });
    document.querySelectorAll("[data-ago]").forEach(function (el) {
      var s = Math.max(0, Math.round((now - lastUpdate) / 1000));
      el.textContent = s < 90 ? s + " s" : Math.round(s / 60) + " min";
    });
    document.querySelectorAll("[data-clock]").forEach(function (el) {
      el.textContent = clock(new Date(now));
    });
    // "clocks evaluated HH:MM" turns into a warning when the tick is late, pushes or not.
    document.querySelectorAll("[data-evaluated-at]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-evaluated-at"));
      var after = 1000 * parseFloat(el.getAttribute("data-late-after") || "0");
      if (isNaN(at) || !after) { return; }
      var late = now - at > after;
      el.classList.toggle("late", late);
      var label = el.querySelector("[data-evaluated-label]");
      var text = late ? "⚠ tick late: clocks last evaluated" : "clocks evaluated";
      if (label && label.textContent !== text) { label.textContent = text; }
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

  // ------------------------------------------------------------------ swapping pushes

  // Focus inside this element.
  function focusIn(el) {
    var active = document.activeElement;
    return !!active && active !== document.body && el.contains(active) ? active : null;
  }

  // The agent is using this element: typing in a field of it, or a menu of it is open (a
  // focused select). A focused button holds nothing: the element may be replaced, and the
  // same button in the new one gets the focus back.
  function inUse(el) {
    var active = focusIn(el);
    return !!active && /^(SELECT|INPUT|TEXTAREA)$/.test(active.tagName);
  }

  function sameControl(fresh, old) {
    var candidates = fresh.querySelectorAll(old.tagName);
    for (var i = 0; i < candidates.length; i++) {
      if (candidates[i].className === old.className && candidates[i].textContent === old.textContent) {
        return candidates[i];
      }
    }
    return null;
  }

  function replace(target, fresh) {
    var focused = focusIn(target);
    target.replaceWith(fresh);
    if (window.htmx) { htmx.process(fresh); }
    var again = focused && sameControl(fresh, focused);
    if (again) { again.focus({ preventScroll: true }); }
  }

  function place(fresh) {
    var target = document.getElementById(fresh.id);
    if (!target) { return; } // not on this screen (another page of the queue, say)
    if (inUse(target)) { pending[fresh.id] = fresh; return; }
    delete pending[fresh.id];
    replace(target, fresh);
  }

  document.addEventListener("focusout", function () {
    setTimeout(function () {
      Object.keys(pending).forEach(function (id) {
        var target = document.getElementById(id);
        if (!target) { delete pending[id]; return; }
        if (!inUse(target)) { replace(target, pending[id]); delete pending[id]; }
      });
    }, 0);
  });

  function received() {
    lastMessage = Date.now();
    lastUpdate = lastMessage;
    if (staleSince !== null || document.body.classList.contains("stale")) {
      staleSince = null;
      setConn("live", "● Live");
    }
    markMine();
    tick();
  }

  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    evt.preventDefault(); // swapped here, so that nothing in use is replaced under the agent
    var template = document.createElement("template");
    template.innerHTML = evt.detail.message;
    var queueChanged = false;
    Array.prototype.slice.call(template.content.children).forEach(function (fresh) {
      if (fresh.id === "queue-changed") { queueChanged = true; return; }
      if (fresh.id) { place(fresh); }
    });
    received();
    if (queueChanged) { scheduleQueueRefresh(); }
    document.dispatchEvent(new CustomEvent("slaboard:message")); // for tests and extensions
  });

  // ------------------------------------------------------------------ the queue's list

  // Rows update in place as they change. Which tickets a view lists (and in what order) is
  // refreshed from the server when the agent is not using the list, at most every 5 s, so
  // rows never move under a pointer, a focused button or an open menu.
  var refreshTimer = null;
  var lastRefresh = 0;
  var pointerInList = false;

  function queueList() { return document.getElementById("queue-list"); }

  function scheduleQueueRefresh() {
    if (!queueList() || refreshTimer !== null) { return; }
    var wait = Math.max(1500, 5000 - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(refreshQueue, wait);
  }

  function refreshQueue() {
    refreshTimer = null;
    var list = queueList();
    if (!list || !window.htmx) { return; }
    if (focusIn(list) || pointerInList || document.querySelector(".htmx-request")) {
      scheduleQueueRefresh();
      return;
    }
    lastRefresh = Date.now();
    htmx.ajax("GET", window.location.pathname + window.location.search, {
      target: "#queue-list",
      swap: "outerHTML",
    });
  }

  document.addEventListener("pointerover", function (evt) {
    var list = queueList();
    pointerInList = !!list && list.contains(evt.target);
  });

  document.addEventListener("htmx:afterSwap", function () { markMine(); tick(); });

  // A reply that was recorded leaves an empty box for the next one.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt && evt.detail.elt.closest && evt.detail.elt.closest(".reply-form");
    if (form && evt.detail.successful) { form.reset(); }
  });

  // ------------------------------------------------------------------ socket state

  document.addEventListener("htmx:wsOpen", function (evt) {
    socket = evt.detail.socketWrapper;
    rawSocket = evt.detail.event && evt.detail.event.target;
    retries = 0;
    lastMessage = Date.now();
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

  // Rows and ticket pages are shared by everyone in a scope; mark what this agent holds.
  function markMine() {
    var me = document.body.getAttribute("data-user");
    document.querySelectorAll("[data-claimed-by]").forEach(function (el) {
      el.classList.toggle("mine", !!me && el.getAttribute("data-claimed-by") === me);
    });
    var head = document.getElementById("ticket-head");
    var wrap = document.querySelector(".ticket-wrap");
    if (head && wrap) {
      wrap.classList.toggle("mine", !!me && head.getAttribute("data-claimed-by") === me);
      wrap.classList.toggle("claimed", head.getAttribute("data-claimed-by") !== "");
    }
  }
  document.addEventListener("DOMContentLoaded", markMine);

  // Show refusals (409 taken, 403 not yours, 400 bad input) in the toast instead of dropping them.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var status = evt.detail.xhr.status;
    if (status === 400 || status === 403 || status === 409) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  markMine();
  tick();
  setInterval(tick, 1000);
})();
