// backbeat dashboard: live refresh without reloading. Polls the JSON API every few
// seconds (the interval comes from the server, never from the URL or storage) and
// updates the page in place. Every value is written with textContent or a fixed
// attribute, never as HTML: job data is user data.
(function () {
  "use strict";
  var body = document.body;
  var every = Math.max(1000, Number(body.dataset.poll) || 5000);
  var STATES = ["scheduled", "queued", "running", "succeeded", "dead", "cancelled"];
  var paused = false;

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }
  function setText(el, value) {
    var text = value === null || value === undefined ? "" : String(value);
    if (el && el.textContent !== text) { el.textContent = text; }
  }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }
  function showStale() { var n = document.querySelector("[data-stale]"); if (n) { n.hidden = false; } }
  function cell(text, cls) { var td = document.createElement("td"); if (cls) { td.className = cls; } td.textContent = text; return td; }
  function badge(alive) {
    var s = document.createElement("span");
    s.className = "badge " + (alive ? "good" : "bad");
    s.textContent = alive ? "alive" : "stale";
    return s;
  }
  function stateBadge(el, state) {
    if (!el || STATES.indexOf(state) < 0) { return; }
    el.className = "state state-" + state;
    setText(el, state);
  }

  function updateQueues(rows) {
    var seen = {};
    document.querySelectorAll("tr[data-queue]").forEach(function (tr) { seen[tr.dataset.queue] = tr; });
    rows.forEach(function (q) {
      var tr = seen[q.name];
      if (!tr) { showStale(); return; }
      STATES.forEach(function (s) { setText(tr.querySelector('td[data-state="' + s + '"]'), q.counts[s]); });
      var flag = tr.querySelector("[data-paused]"); if (flag) { flag.hidden = !q.paused; }
      var a = tr.querySelector("[data-when-active]"); if (a) { a.hidden = q.paused; }
      var p = tr.querySelector("[data-when-paused]"); if (p) { p.hidden = !q.paused; }
    });
    var totals = {};
    STATES.forEach(function (s) { totals[s] = 0; });
    rows.forEach(function (q) { STATES.forEach(function (s) { totals[s] += q.counts[s]; }); });
    document.querySelectorAll("[data-total]").forEach(function (el) { setText(el, totals[el.dataset.total]); });
  }

  function workerRow(w, full) {
    var tr = document.createElement("tr");
    if (full) {
      [[w.host], [w.pid, "num"], [w.queues.join(", ")], [w.in_flight + "/" + w.concurrency, "num"],
       [when(w.heartbeat_at)], [when(w.started_at)]].forEach(function (c) { tr.appendChild(cell(c[0], c[1])); });
      var td = document.createElement("td"); td.appendChild(badge(w.alive)); tr.appendChild(td);
      tr.appendChild(cell(w.version));
      var tasks = cell(w.tasks.length, "num"); tasks.title = w.tasks.join(", "); tr.appendChild(tasks);
    } else {
      [[w.host + ":" + w.pid], [w.queues.join(", ")], [w.in_flight + "/" + w.concurrency, "num"],
       [when(w.heartbeat_at)]].forEach(function (c) { tr.appendChild(cell(c[0], c[1])); });
      var alive = document.createElement("td"); alive.appendChild(badge(w.alive)); tr.appendChild(alive);
    }
    return tr;
  }
  function updateWorkers(workers, selector, full) {
    var tbody = document.querySelector(selector);
    if (!tbody || !workers.length) { return; }
    tbody.replaceChildren.apply(tbody, workers.map(function (w) { return workerRow(w, full); }));
  }

  // The same geometry as backbeat/web/chart.py.
  function drawChart(series) {
    var svg = document.querySelector("svg[data-chart]");
    if (!svg) { return; }
    var width = Number(svg.dataset.width), height = Number(svg.dataset.height), top = 6;
    var buckets = series.buckets;
    var peak = Math.max.apply(null, [0].concat(buckets.map(function (b) { return b.succeeded + b.dead; }))) || 1;
    var slot = width / Math.max(1, buckets.length), scale = (height - top) / peak;
    var ns = "http://www.w3.org/2000/svg", rects = [], ok = 0, dead = 0;
    buckets.forEach(function (b, i) {
      var h1 = b.succeeded * scale, h2 = b.dead * scale, x = i * slot + 1, w = Math.max(1, slot - 2);
      var label = b.start.slice(11, 16) + "-" + b.end.slice(11, 16) + " UTC: " + b.succeeded + " succeeded, " + b.dead + " dead";
      [["ok", height - h1, h1], ["dead", height - h1 - h2, h2]].forEach(function (part) {
        var r = document.createElementNS(ns, "rect");
        r.setAttribute("class", part[0]); r.setAttribute("x", x); r.setAttribute("y", part[1]);
        r.setAttribute("width", w); r.setAttribute("height", part[2]);
        var title = document.createElementNS(ns, "title"); title.textContent = label; r.appendChild(title);
        rects.push(r);
      });
      ok += b.succeeded; dead += b.dead;
    });
    var g = svg.querySelector("[data-bars]");
    g.replaceChildren.apply(g, rects);
    setText(document.querySelector("[data-chart-ok]"), ok);
    setText(document.querySelector("[data-chart-dead]"), dead);
    setText(document.querySelector("[data-chart-peak]"), peak);
  }

  function updateJobs(rows) {
    var shown = document.querySelectorAll("tr[data-job]");
    if (shown.length && rows.length && shown[0].dataset.job !== rows[0].id) { showStale(); }
    var byId = {};
    rows.forEach(function (j) { byId[j.id] = j; });
    shown.forEach(function (tr) {
      var j = byId[tr.dataset.job];
      if (!j) { return; }
      stateBadge(tr.querySelector("[data-state-badge]"), j.state);
      setText(tr.querySelector("[data-attempts]"), j.attempts + "/" + j.max_attempts);
      setText(tr.querySelector("[data-error]"), (j.error || "").slice(0, 120));
    });
  }

  function updateJob(job) {
    stateBadge(document.querySelector("[data-state-badge]"), job.state);
    setText(document.querySelector('[data-field="attempts"]'), job.attempts + "/" + job.max_attempts);
    ["run_at", "started_at", "finished_at"].forEach(function (k) { setText(document.querySelector('[data-field="' + k + '"]'), when(job[k])); });
    ["worker_id", "error", "traceback"].forEach(function (k) { setText(document.querySelector('[data-field="' + k + '"]'), job[k]); });
    setText(document.querySelector('[data-field="result"]'), job.result === null ? "" : JSON.stringify(job.result, null, 2));
    document.querySelectorAll("[data-show-when]").forEach(function (el) {
      el.hidden = el.dataset.showWhen.split(" ").indexOf(job.state) < 0;
    });
  }

  // The same text as the "seconds" filter and the pct macro of the templates.
  function seconds(v) {
    if (v === null || v === undefined) { return ""; }
    if (v >= 7200) { return +(v / 3600).toFixed(1) + " h"; }
    if (v >= 120) { return +(v / 60).toFixed(1) + " min"; }
    return +v.toFixed(1) + " s";
  }
  function pct(v) { return v === null || v === undefined ? "\u2013" : (v * 100).toFixed(2) + "%"; }
  var SLA = ["ok", "breach", "paused"];
  function slaBadge(el, status) {
    if (!el) { return; }
    if (SLA.indexOf(status) < 0) { el.className = "muted"; setText(el, "no SLA"); return; }
    el.className = "sla sla-" + status;
    setText(el, status);
  }
  function updateSchedule(scope, s) {
    slaBadge(scope.querySelector("[data-sla-status]"), s.sla_status);
    setText(scope.querySelector("[data-staleness]"), seconds(s.staleness));
    setText(scope.querySelector("[data-next-at]"), when(s.next_at));
    setText(scope.querySelector("[data-schedule-state]"), s.state);
    var c = scope.querySelector("[data-compliance]");
    if (c && s.sla_report && c.tagName === "TD") { setText(c, pct(s.sla_report.compliance)); }
    var a = scope.querySelector("[data-when-active]"); if (a) { a.hidden = s.paused; }
    var p = scope.querySelector("[data-when-paused]"); if (p) { p.hidden = !s.paused; }
  }
  function updateSchedules(rows) {
    var shown = document.querySelectorAll("tr[data-schedule]");
    var order = Array.prototype.map.call(shown, function (tr) { return tr.dataset.schedule; }).join("\n");
    var now = rows.slice(0, shown.length).map(function (s) { return s.key; }).join("\n");
    if (order !== now) { showStale(); }
    var byKey = {};
    rows.forEach(function (s) { byKey[s.key] = s; });
    shown.forEach(function (tr) { var s = byKey[tr.dataset.schedule]; if (s) { updateSchedule(tr, s); } });
  }
  function updateSla(data) {
    var sum = data.summary;
    document.querySelectorAll("[data-sla-breached]").forEach(function (el) { setText(el, sum.in_breach); });
    document.querySelectorAll("[data-sla-compliance]").forEach(function (el) { setText(el, pct(sum.compliance)); });
    setText(document.querySelector("[data-sla-count]"), sum.schedules);
    var panel = document.querySelector("[data-sla]");
    if (panel) { panel.classList.toggle("breached", sum.in_breach > 0); }
    var card = document.querySelector("[data-sla-card]");
    if (card) { card.classList.toggle("bad", sum.in_breach > 0); }
    var shown = Array.prototype.map.call(document.querySelectorAll("tr[data-sla-row]"), function (tr) { return tr.dataset.slaRow; });
    var now = data.schedules.slice(0, shown.length).map(function (r) { return r.key; });
    if (shown.join("\n") !== now.join("\n")) { var n = document.querySelector("[data-sla-stale]"); if (n) { n.hidden = false; } return; }
    data.schedules.forEach(function (r) {
      var tr = document.querySelector('tr[data-sla-row="' + CSS.escape(r.key) + '"]');
      if (!tr) { return; }
      slaBadge(tr.querySelector("[data-sla-status]"), r.status);
      setText(tr.querySelector("[data-staleness]"), seconds(r.staleness));
      setText(tr.querySelector("[data-compliance]"), pct(r.compliance));
    });
  }
  function updateAutopilot(ap, workers) {
    setText(document.querySelector("[data-alive]"), workers.filter(function (w) { return w.alive; }).length);
    setText(document.querySelector("[data-desired]"), ap ? ap.desired_workers : "\u2013");
    setText(document.querySelector("[data-desired-reason]"), ap ? ap.reason : "");
  }

  var EVENT_STATES = ["pending", "handled", "unhandled", "dead"];
  function updateEvent(scope, e) {
    var badge = scope.querySelector("[data-event-state]");
    if (badge && EVENT_STATES.indexOf(e.state) >= 0) { badge.className = "event event-" + e.state; setText(badge, e.state); }
    setText(scope.querySelector("[data-jobs]"), e.jobs);
    setText(scope.querySelector("[data-reason]"), scope === document ? e.reason : (e.reason || "").slice(0, 160));
    setText(scope.querySelector("[data-settled]"), when(e.settled_at));
    scope.querySelectorAll("[data-show-when]").forEach(function (el) { el.hidden = el.dataset.showWhen.split(" ").indexOf(e.state) < 0; });
  }
  function updateEvents(rows) {
    var shown = document.querySelectorAll("tr[data-event]");
    if (shown.length && rows.length && shown[0].dataset.event !== rows[0].id) { showStale(); }
    var byId = {};
    rows.forEach(function (e) { byId[e.id] = e; });
    shown.forEach(function (tr) { var e = byId[tr.dataset.event]; if (e) { updateEvent(tr, e); } });
  }

  var pages = {
    overview: function () {
      return Promise.all([
        getJSON(body.dataset.apiQueues).then(updateQueues),
        getJSON(body.dataset.apiThroughput).then(drawChart),
        getJSON(body.dataset.apiStatus).then(function (s) {
          setText(document.querySelector("[data-rate]"), s.throughput.per_second);
          updateAutopilot(s.autopilot, s.workers);
          updateWorkers(s.workers, "tbody[data-workers]", false);
        }),
        getJSON(body.dataset.apiSla).then(updateSla)
      ]);
    },
    events: function () { return getJSON(body.dataset.apiEvents).then(updateEvents); },
    event: function () { return getJSON(body.dataset.apiEvent).then(function (e) { updateEvent(document, e); }); },
    schedules: function () { return getJSON(body.dataset.apiSchedules).then(updateSchedules); },
    schedule: function () { return getJSON(body.dataset.apiSchedule).then(function (d) { updateSchedule(document, d.schedule); }); },
    queues: function () { return getJSON(body.dataset.apiQueues).then(updateQueues); },
    workers: function () { return getJSON(body.dataset.apiWorkers).then(function (w) { updateWorkers(w, "tbody[data-workers-full]", true); }); },
    jobs: function () { return getJSON(body.dataset.apiJobs).then(updateJobs); },
    job: function () { return getJSON(body.dataset.apiJob).then(updateJob); }
  };

  var refresh = pages[body.dataset.page];
  if (!refresh) { return; }
  var status = document.querySelector("[data-live-status]");
  var toggle = document.querySelector("[data-live-toggle]");
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      setText(toggle, paused ? "Resume updates" : "Pause updates");
    });
  }
  function tick() {
    if (paused || document.hidden) { setTimeout(tick, every); return; }
    refresh().then(function () {
      setText(status, "Times are UTC. Updated " + new Date().toLocaleTimeString() + "; refreshes every " + every / 1000 + " s.");
      body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
    }, function (err) {
      setText(status, "Refresh failed (" + err.message + "); retrying in " + every / 1000 + " s.");
    }).then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
