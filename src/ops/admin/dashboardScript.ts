// The dashboard's script, served as /admin/app.js. Plain ES2020 for any current browser, no
// framework, no build step: it polls api/state and redraws. Every value from the server goes
// into the page as text (textContent, SVG <title>), never as HTML: room ids, reasons and plugin
// errors come from outside. No template literals inside, so this file needs no escaping.

/** Milliseconds between two polls of api/state. */
export const POLL_MS = 3000;

export const DASHBOARD_SCRIPT = `"use strict";
(function () {
  var POLL_MS = ${POLL_MS};
  var SVG = "http://www.w3.org/2000/svg";
  var timer = 0;
  var inFlight = false;
  // Opened with a login link (#token=…) while a session was still valid: out of the address bar.
  if (location.hash.indexOf("#token=") === 0) history.replaceState(null, "", location.pathname + location.search);

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) node.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function code(text) { return el("code", null, [String(text)]); }

  function fmtNumber(n) { return Number(n).toLocaleString("en"); }

  function fmtAge(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d";
  }

  function fmtTime(ms) {
    if (ms === undefined || ms === null) return "–";
    var d = new Date(ms);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function emptyRow(columns, text) {
    return el("tr", null, [el("td", { colspan: String(columns), "class": "empty" }, [text])]);
  }

  function setStatus(text, isError) {
    var node = $("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }

  function setNotice(text, isError) {
    var node = $("notice");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }

  function renderAbout(about) {
    var parts = [];
    if (about.botUserId) parts.push(String(about.botUserId));
    if (about.homeserver) parts.push("homeserver " + about.homeserver);
    if (about.ping) parts.push(about.ping.ok ? "ping ok" : "ping failed: " + (about.ping.diagnosis || "unknown"));
    if (about.startedAt) parts.push("up " + fmtAge(Date.now() - about.startedAt));
    $("about").textContent = parts.join(" · ");
  }

  function renderCards(state) {
    $("total-pending").textContent = fmtNumber(state.totals.pending);
    $("total-sent").textContent = fmtNumber(state.totals.sent);
    $("total-dead").textContent = fmtNumber(state.totals.dead);
    $("count-inflight").textContent = fmtNumber(state.counters.inFlight);
    $("count-retried").textContent = fmtNumber(state.counters.retried);
    $("count-ratelimited").textContent = fmtNumber(state.counters.rateLimited);
  }

  function renderLanes(lanes) {
    var rows = lanes.shown.map(function (l) {
      return el("tr", { "data-lane": l.lane }, [
        el("td", null, [code(l.lane)]),
        el("td", { "class": "num" }, [fmtNumber(l.pending)]),
        el("td", { "class": "num" }, [fmtAge(l.oldestAgeMs)]),
      ]);
    });
    $("lanes").replaceChildren.apply($("lanes"), rows.length ? rows : [emptyRow(3, "Nothing pending: every lane is empty.")]);
    $("lanes-summary").textContent =
      lanes.count > lanes.shown.length ? "the deepest " + lanes.shown.length + " of " + lanes.count : lanes.count + " with pending rows";
  }

  function renderPlugins(plugins) {
    var rows = plugins.map(function (p) {
      return el("tr", { "data-plugin": p.name }, [
        el("td", null, [code(p.name)]),
        el("td", { "class": "nowrap status-" + p.status }, [p.status]),
        el("td", null, [p.error || ""]),
      ]);
    });
    $("plugins").replaceChildren.apply($("plugins"), rows.length ? rows : [emptyRow(3, "No plugins configured.")]);
  }

  function renderDead(dead, total) {
    var rows = dead.map(function (d) {
      var button = el("button", { type: "button", "class": "retry", "data-txn": d.txnId }, ["Retry"]);
      button.addEventListener("click", function () { retry(d.txnId, button); });
      return el("tr", { "data-txn": d.txnId }, [
        el("td", { "class": "nowrap" }, [fmtTime(d.settledAt)]),
        el("td", null, [code(d.lane)]),
        el("td", null, [code(d.txnId)]),
        el("td", null, [el("span", { "class": "errcode" }, [d.errcode + " (" + d.status + ")"]), " " + reasonText(d)]),
        el("td", { "class": "num" }, [String(d.attempts)]),
        el("td", null, [button]),
      ]);
    });
    $("dead").replaceChildren.apply($("dead"), rows.length ? rows : [emptyRow(6, "No dead letters.")]);
    $("dead-summary").textContent = total > dead.length ? "the newest " + dead.length + " of " + total : total ? String(total) : "";
  }

  // The reason often starts with the status and errcode already shown: "403 M_FORBIDDEN: …".
  function reasonText(d) {
    var reason = String(d.reason || "");
    var prefix = d.status + " " + d.errcode + ": ";
    return reason.indexOf(prefix) === 0 ? reason.slice(prefix.length) : reason;
  }

  // Day and time when not today: a rejected item may be days old.
  function fmtWhen(ms) {
    if (ms === undefined || ms === null) return "–";
    var d = new Date(ms);
    if (d.toDateString() === new Date().toDateString()) return fmtTime(ms);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + fmtTime(ms).slice(0, 5);
  }

  function renderInbound(inbound) {
    $("inbound-pending").textContent = fmtNumber(inbound.totals.pending);
    $("inbound-done").textContent = fmtNumber(inbound.totals.done);
    $("inbound-dead").textContent = fmtNumber(inbound.totals.dead);
    $("inbound-rejected").textContent = fmtNumber(inbound.totals.rejected);
    renderInboundItems($("inbound-rejected-items"), $("inbound-rejected-summary"), inbound.rejected,
      inbound.totals.rejected, false, "Nothing rejected: every item the homeserver sent was well-formed.");
    renderInboundItems($("inbound-dead-items"), $("inbound-dead-summary"), inbound.dead,
      inbound.totals.dead, true, "No dead items: every handler finished.");
  }

  // Event ids, lanes and reasons come from the network: text nodes only.
  function renderInboundItems(tbody, summary, items, total, withAttempts, emptyText) {
    var columns = withAttempts ? 7 : 6;
    var rows = items.map(function (i) {
      var cells = [
        el("td", { "class": "nowrap" }, [fmtWhen(withAttempts ? i.settledAt : i.receivedAt)]),
        el("td", null, [String(i.kind)]),
        el("td", null, [code(i.lane)]),
        el("td", { "class": "event-id" }, [i.eventId ? code(i.eventId) : "–"]),
        el("td", null, [code(i.txnId)]),
      ];
      if (withAttempts) cells.push(el("td", { "class": "num" }, [String(i.attempts)]));
      cells.push(el("td", { "class": "reason" }, [String(i.reason)]));
      return el("tr", { "data-seq": String(i.seq) }, cells);
    });
    tbody.replaceChildren.apply(tbody, rows.length ? rows : [emptyRow(columns, emptyText)]);
    summary.textContent =
      total > items.length ? "the newest " + items.length + " of " + fmtNumber(total) : total ? fmtNumber(total) : "";
  }

  function renderRecent(recent) {
    var rows = recent.map(function (r) {
      return el("tr", { "data-txn": r.txnId }, [
        el("td", { "class": "nowrap" }, [fmtTime(r.settledAt)]),
        el("td", null, [code(r.lane)]),
        el("td", null, [code(r.txnId)]),
        el("td", { "class": "event-id" }, [r.eventId ? code(r.eventId) : "–"]),
        el("td", { "class": "num" }, [String(r.attempts)]),
      ]);
    });
    $("recent").replaceChildren.apply($("recent"), rows.length ? rows : [emptyRow(5, "Nothing sent yet.")]);
  }

  // Per-minute bars over the last hour as inline SVG: sent stacked under dead-lettered.
  function renderChart(t) {
    // One SVG unit per CSS pixel: labels keep their size whatever the width.
    var W = Math.max(320, Math.round($("chart").clientWidth) || 760), H = 190, left = 40, right = 8, top = 10, bottom = 24;
    var plotW = W - left - right, plotH = H - top - bottom;
    var n = t.sent.length;
    var peak = 0, sum = 0, deadSum = 0;
    for (var i = 0; i < n; i++) {
      peak = Math.max(peak, t.sent[i] + t.dead[i]);
      sum += t.sent[i];
      deadSum += t.dead[i];
    }
    var max = niceCeil(Math.max(peak, 4));
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, "class": "chart", role: "img",
      "aria-label": "Requests per minute over the last " + n + " minutes" });
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH - f * plotH;
      root.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, "class": "grid" }));
      root.appendChild(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmtNumber(Math.round(max * f))));
    });
    var slot = plotW / n, barW = Math.max(1, slot - 2);
    for (var j = 0; j < n; j++) {
      var x = left + j * slot + 1;
      var start = t.lastSlotStart - (n - 1 - j) * t.slotMs;
      // A minute with any outcome gets at least 2 px: one dead letter among a thousand sends shows.
      var hs = barHeight(t.sent[j], max, plotH), hd = barHeight(t.dead[j], max, plotH);
      var g = svg("g", { "data-minute": start });
      g.appendChild(svg("title", {}, fmtTime(start).slice(0, 5) + " · " + t.sent[j] + " sent, " + t.dead[j] + " dead"));
      // An invisible full-height target, so empty minutes have a tooltip too.
      g.appendChild(svg("rect", { x: x, y: top, width: barW, height: plotH, fill: "transparent" }));
      if (hs > 0) g.appendChild(svg("rect", { x: x, y: top + plotH - hs, width: barW, height: hs, "class": "bar-sent" }));
      if (hd > 0) g.appendChild(svg("rect", { x: x, y: top + plotH - hs - hd, width: barW, height: hd, "class": "bar-dead" }));
      root.appendChild(g);
    }
    [[0, n + " min ago", "start"], [Math.floor(n / 2), Math.ceil(n / 2) + " min ago", "middle"], [n - 1, "now", "end"]].forEach(function (l) {
      var x = left + l[0] * slot + (l[2] === "end" ? slot : l[2] === "middle" ? slot / 2 : 0);
      root.appendChild(svg("text", { x: x, y: H - 6, "text-anchor": l[2] }, l[1]));
    });
    $("chart").replaceChildren(root);
    $("throughput-summary").textContent =
      fmtNumber(sum) + " sent, " + fmtNumber(deadSum) + " dead-lettered in the last hour · peak " + fmtNumber(peak) + "/min (since this process started)";
  }

  function barHeight(count, max, plotH) {
    return count > 0 ? Math.max(2, (count / max) * plotH) : 0;
  }

  // The top of the y axis: an even round number (its half is a whole gridline label) >= v.
  function niceCeil(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [2, 4, 6, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 20 * p;
  }

  function render(state) {
    renderAbout(state.about || {});
    renderCards(state);
    renderChart(state.throughput);
    renderLanes(state.lanes);
    renderPlugins(state.plugins);
    renderDead(state.dead, state.totals.dead);
    renderInbound(state.inbound);
    renderRecent(state.recent);
  }

  function retry(txnId, button) {
    button.disabled = true;
    button.textContent = "Retrying…";
    fetch("api/dead/" + encodeURIComponent(txnId) + "/retry", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      credentials: "same-origin",
    })
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (body) {
          if (res.status === 401) { location.reload(); return; }
          if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
          setNotice("Requeued " + txnId + ": it is being sent now.", false);
        });
      })
      .catch(function (error) {
        setNotice("Retry of " + txnId + " failed: " + error.message, true);
        button.disabled = false;
        button.textContent = "Retry";
      })
      .then(refresh);
  }

  function refresh() {
    if (inFlight) return;
    inFlight = true;
    clearTimeout(timer);
    fetch("api/state", { headers: { accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (res) {
        // The session ended (logout elsewhere, a restart): the page itself shows the login form.
        if (res.status === 401) { location.reload(); return; }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json().then(function (state) {
          render(state);
          setStatus("updated " + fmtTime(state.now), false);
        });
      })
      .catch(function (error) { setStatus("cannot reach the appservice (" + error.message + "); retrying", true); })
      .then(function () {
        inFlight = false;
        timer = setTimeout(refresh, POLL_MS);
      });
  }

  refresh();
})();
`;
