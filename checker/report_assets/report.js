/* kvcheck report.html timeline: inlined into the page by checker/report.py.
 *
 * Reads the JSON in the element with id "kvcheck-data" (column-oriented calls, see
 * report.build_timeline), builds one label per client process, and draws the timeline on a
 * canvas with a virtual viewport: only the rows and the x range in view are drawn, and boxes
 * narrower than a pixel are merged per pixel column, so the cost of a frame is bounded by the
 * canvas size, not by the number of ops. No network, no libraries.
 */
(function () {
  "use strict";
  var T0 = window.performance.now();
  var DATA = JSON.parse(document.getElementById("kvcheck-data").textContent);
  var T = DATA.timeline;
  var C = T.calls;
  var N = C.o.length;
  var NROWS = T.processes.length;
  var ROW_H = 18, AXIS_H = 20, LANE_H = 15;
  var COLORS = { o: "#9be29b", f: "#f4a8a8", i: "#f7cf7a", p: "#d4d4d4" };
  var EDGE = { o: "#4f9a4f", f: "#c06060", i: "#c0962b", p: "#9a9a9a" };
  var OUTCOME = { o: "ok", f: "fail", i: "info", p: "pending" };
  var LANE_COLORS = ["255,140,0", "30,144,255", "199,21,133", "34,139,34", "138,43,226", "0,139,139", "205,92,92"];
  // Role bits from report.highlights: 1 in the minimal history, 2 cannot be linearized,
  // 4 the last ok op before the failing one.
  function roleText(bits) {
    var out = [];
    if (bits & 2) out.push("cannot be linearized");
    if (bits & 1) out.push("in the minimal failing sub-history");
    if (bits & 4) out.push("last ok op before the failing op");
    return out.join("; ");
  }

  // ---- decode the columns ----------------------------------------------------------------
  var start = new Float64Array(N), end = new Float64Array(N), row = new Int32Array(N);
  var acc = 0;
  for (var i = 0; i < N; i++) {
    acc += C.s[i];
    start[i] = acc;
    end[i] = C.d[i] === null ? NaN : acc + C.d[i];
    row[i] = C.r[i];
  }
  var X_MIN = T.xMin, X_MAX = Math.max(T.xMax, T.xMin + 1);
  // drawEnd: where a call's box ends; info calls also get a tail to the end of the history.
  function boxEnd(i) { return C.o.charCodeAt(i) === 112 /* p */ ? X_MAX : end[i]; }
  function reachEnd(i) { var o = C.o[i]; return (o === "p" || o === "i") ? X_MAX : end[i]; }

  var rows = [];
  for (var r = 0; r < NROWS; r++) rows.push([]);
  for (i = 0; i < N; i++) rows[row[i]].push(i);
  for (r = 0; r < NROWS; r++) {
    rows[r].sort(function (a, b) { return start[a] - start[b] || a - b; });
    rows[r] = Int32Array.from(rows[r]);
  }
  var callOfOp = new Map();
  for (i = 0; i < N; i++) {
    callOfOp.set(C.id[i], i);
    if (C.c[i] !== null) callOfOp.set(C.id[i] + C.c[i], i);
  }
  var HL = DATA.highlight || {};
  var hlCalls = Object.keys(HL).map(Number);
  var lanes = 0;
  T.faults.forEach(function (f) { lanes = Math.max(lanes, f.lane + 1); });
  var eventLane = T.nemesisEvents.length ? lanes : -1;
  var nLanes = lanes + (eventLane >= 0 ? 1 : 0);
  var HEAD_H = AXIS_H + nLanes * LANE_H;

  // ---- DOM ---------------------------------------------------------------------------------
  var timeline = document.getElementById("timeline");
  var plot = document.getElementById("plot");
  var canvas = document.getElementById("timeline-canvas");
  var ctx = canvas.getContext("2d");
  var overview = document.getElementById("overview");
  var octx = overview.getContext("2d");
  var labels = document.getElementById("labels");
  var gutterHead = document.getElementById("gutter-head");
  var tooltip = document.getElementById("tooltip");
  var inner = document.createElement("div");
  inner.id = "labels-inner";
  var anomalyRows = {};
  hlCalls.forEach(function (c) { if (HL[c] & 2) anomalyRows[row[c]] = true; });
  var frag = document.createDocumentFragment();
  for (r = 0; r < NROWS; r++) {
    var lab = document.createElement("div");
    lab.className = "row-label" + (anomalyRows[r] ? " has-anomaly" : "");
    lab.dataset.process = String(T.processes[r]);
    lab.textContent = "p" + T.processes[r];
    lab.title = "client process " + T.processes[r] + " (" + rows[r].length + " calls)";
    frag.appendChild(lab);
  }
  inner.appendChild(frag);
  labels.appendChild(inner);
  gutterHead.style.height = HEAD_H + "px";
  gutterHead.textContent = T.axis === "time" ? "time" : "event #";
  timeline.dataset.rows = String(NROWS);
  timeline.dataset.calls = String(N);

  // ---- key filter (keyed workloads): other keys' calls are drawn faded ----------------------
  var keyFilter = -1, keySelect = null;
  if (T.keyNames.length > 1) {
    keySelect = document.createElement("select");
    keySelect.id = "key-filter";
    var all = document.createElement("option"); all.value = "-1"; all.textContent = "all keys";
    keySelect.appendChild(all);
    T.keyNames.forEach(function (name, k) {
      var opt = document.createElement("option"); opt.value = String(k); opt.textContent = "key " + name;
      keySelect.appendChild(opt);
    });
    keySelect.addEventListener("change", function () { keyFilter = Number(keySelect.value); schedule(); });
    var lab2 = document.createElement("label"); lab2.textContent = "highlight ";
    lab2.appendChild(keySelect);
    document.querySelector("#timeline-section .toolbar").appendChild(lab2);
  }
  function setKeyFilter(k) { keyFilter = k; if (keySelect) keySelect.value = String(k); }

  // ---- view state ------------------------------------------------------------------------
  var view = { x0: X_MIN, x1: X_MAX, y: 0 };
  var W = 0, H = 0, dpr = 1, focused = -1;
  function rowsH() { return Math.max(0, H - HEAD_H); }
  function maxY() { return Math.max(0, NROWS * ROW_H - rowsH()); }
  function toPx(x) { return (x - view.x0) / (view.x1 - view.x0) * W; }
  function toX(px) { return view.x0 + px / W * (view.x1 - view.x0); }
  function clampView() {
    var span = view.x1 - view.x0, full = X_MAX - X_MIN;
    var minSpan = T.axis === "time" ? 1000 : 2;
    if (span > full * 1.05) { span = full * 1.05; }
    if (span < minSpan) span = minSpan;
    var c = (view.x0 + view.x1) / 2;
    view.x0 = c - span / 2; view.x1 = c + span / 2;
    var pad = full * 0.025;
    if (view.x0 < X_MIN - pad) { view.x1 += X_MIN - pad - view.x0; view.x0 = X_MIN - pad; }
    if (view.x1 > X_MAX + pad) { view.x0 -= view.x1 - X_MAX - pad; view.x1 = X_MAX + pad; }
    view.y = Math.min(Math.max(0, view.y), maxY());
  }
  function fit() { var pad = (X_MAX - X_MIN) * 0.01; view.x0 = X_MIN - pad; view.x1 = X_MAX + pad; view.y = 0; }

  function resize() {
    dpr = window.devicePixelRatio || 1;
    W = Math.max(100, plot.clientWidth);
    var want = HEAD_H + NROWS * ROW_H + 2;
    H = Math.max(HEAD_H + ROW_H, Math.min(want, Math.max(240, Math.floor(window.innerHeight * 0.72))));
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    canvas.style.width = W + "px"; canvas.style.height = H + "px";
    labels.style.height = (H - HEAD_H) + "px";
    var ow = Math.max(100, overview.clientWidth);
    overview.width = Math.round(ow * dpr); overview.height = Math.round(36 * dpr);
    buildDensity(ow);
    clampView();
    schedule();
  }

  // ---- formatting ------------------------------------------------------------------------
  // An axis label: the unit follows the size of the times in view, the decimals the step.
  function fmtX(x, step) {
    if (T.axis !== "time") return "#" + Math.round(x);
    var m = Math.max(Math.abs(view.x0), Math.abs(view.x1));
    var unit = m >= 1e9 ? 1e9 : m >= 1e6 ? 1e6 : m >= 1e3 ? 1e3 : 1;
    var name = { 1e9: " s", 1e6: " ms", 1e3: " µs", 1: " ns" }[unit];
    var decimals = Math.min(9, Math.max(0, Math.ceil(Math.log10(unit / step) - 1e-9)));
    return (x / unit).toFixed(decimals) + name;
  }
  function fmtTime(x) {
    if (T.axis !== "time") return "event #" + x;
    return (x / 1e6).toFixed(3) + " ms";
  }
  function niceStep(span, px) {
    var raw = span / Math.max(1, px / 110);
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    var s = m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10;
    var step = s * p;
    if (T.axis !== "time") step = Math.max(1, Math.round(step));
    return step;
  }

  // ---- overview (whole history density) ----------------------------------------------------
  var density = null, densityBad = null;
  function buildDensity(ow) {
    density = new Float64Array(ow); densityBad = new Float64Array(ow);
    var span = X_MAX - X_MIN;
    for (var i = 0; i < N; i++) {
      var b = Math.min(ow - 1, Math.max(0, Math.floor((start[i] - X_MIN) / span * ow)));
      density[b] += 1;
      var o = C.o[i];
      if (o !== "o") densityBad[b] += 1;
    }
  }
  function drawOverview() {
    var ow = overview.width / dpr, oh = 36;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, ow, oh);
    var span = X_MAX - X_MIN;
    function ox(x) { return (x - X_MIN) / span * ow; }
    T.faults.forEach(function (f) {
      octx.fillStyle = "rgba(" + LANE_COLORS[f.lane % LANE_COLORS.length] + ",0.25)";
      octx.fillRect(ox(f.s), 0, Math.max(1, ox(f.e) - ox(f.s)), oh);
    });
    var max = 1;
    for (var b = 0; b < density.length; b++) if (density[b] > max) max = density[b];
    for (b = 0; b < density.length; b++) {
      if (!density[b]) continue;
      // bar height: calls started in this pixel column; the part not ok on top, in amber
      var h = Math.max(1, density[b] / max * (oh - 6));
      var bad = densityBad[b] ? Math.max(1, h * densityBad[b] / density[b]) : 0;
      octx.fillStyle = "#6aa86a";
      octx.fillRect(b, oh - h, 1, h - bad);
      if (bad) { octx.fillStyle = "#d08a2a"; octx.fillRect(b, oh - h, 1, bad); }
    }
    hlCalls.forEach(function (c) {
      if (!(HL[c] & 2)) return;
      octx.fillStyle = "#d00000";
      octx.fillRect(ox(start[c]) - 1, 0, 3, oh);
    });
    octx.strokeStyle = "#1f5fbf"; octx.lineWidth = 2;
    var a = ox(view.x0), z = ox(view.x1);
    octx.strokeRect(Math.max(1, a), 1, Math.max(3, Math.min(ow - 1, z) - Math.max(1, a)), oh - 2);
  }

  // ---- the timeline ----------------------------------------------------------------------
  var pending = false;
  function schedule() { if (!pending) { pending = true; window.requestAnimationFrame(draw); } }

  function firstInRow(list, x) {
    // index of the first call whose start > x, minus one (it may reach into x)
    var lo = 0, hi = list.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (start[list[mid]] > x) hi = mid; else lo = mid + 1; }
    return Math.max(0, lo - 1);
  }

  function draw() {
    var tDraw = window.performance.now();
    pending = false;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px ui-monospace, Menlo, Consolas, monospace";
    ctx.textBaseline = "middle";
    var r0 = Math.floor(view.y / ROW_H), r1 = Math.min(NROWS - 1, Math.floor((view.y + rowsH()) / ROW_H));
    // row shading
    ctx.save();
    ctx.beginPath(); ctx.rect(0, HEAD_H, W, rowsH()); ctx.clip();
    for (var r = r0; r <= r1; r++) {
      if (r % 2 === 0) { ctx.fillStyle = "#f6f6f6"; ctx.fillRect(0, HEAD_H + r * ROW_H - view.y, W, ROW_H); }
    }
    // fault bands over the rows
    T.faults.forEach(function (f) {
      var a = toPx(f.s), b = toPx(f.e);
      if (b < 0 || a > W) return;
      ctx.fillStyle = "rgba(" + LANE_COLORS[f.lane % LANE_COLORS.length] + ",0.13)";
      ctx.fillRect(a, HEAD_H, Math.max(1, b - a), rowsH());
    });
    var drawn = 0;
    var x0 = view.x0, x1 = view.x1;
    for (r = r0; r <= r1; r++) {
      var list = rows[r];
      if (!list.length) continue;
      var y = HEAD_H + r * ROW_H - view.y;
      var lastPx = -1e9, lastO = "";
      for (var k = firstInRow(list, x0); k < list.length; k++) {
        var c = list[k];
        var s = start[c];
        if (s > x1) break;
        var e = boxEnd(c);
        var o = C.o[c];
        if (o === "i") {
          var te = toPx(X_MAX);
          if (te > 0) {
            ctx.strokeStyle = "rgba(192,150,43,0.55)"; ctx.setLineDash([3, 3]); ctx.lineWidth = 1;
            ctx.beginPath(); ctx.moveTo(Math.max(0, toPx(e)), y + ROW_H / 2); ctx.lineTo(Math.min(W, te), y + ROW_H / 2); ctx.stroke();
            ctx.setLineDash([]);
          }
        }
        if (e < x0) continue;
        var a = toPx(s), b = toPx(e);
        var w = b - a;
        var faded = keyFilter >= 0 && C.k[c] !== keyFilter;
        if (faded) {
          ctx.globalAlpha = 0.15; ctx.fillStyle = COLORS[o];
          ctx.fillRect(a, y + 2, Math.max(1, w), ROW_H - 4);
          ctx.globalAlpha = 1; drawn++;
          continue;
        }
        if (w < 1) {
          // Sub-pixel calls: one mark per pixel column; fail/info win over ok.
          var px = Math.floor(a);
          if (px === lastPx && !(o !== "o" && lastO === "o")) continue;
          lastPx = px; lastO = o;
          ctx.fillStyle = EDGE[o] || "#999";
          ctx.fillRect(px, y + 2, 1, ROW_H - 4);
          drawn++;
          continue;
        }
        lastPx = Math.floor(b); lastO = o;
        ctx.fillStyle = COLORS[o];
        ctx.fillRect(a, y + 2, w, ROW_H - 4);
        if (w > 3) { ctx.strokeStyle = EDGE[o]; ctx.lineWidth = 1; ctx.strokeRect(a + 0.5, y + 2.5, w - 1, ROW_H - 5); }
        if (w > 40) {
          var text = T.fNames[C.f[c]] + " " + C.v[c];
          ctx.save(); ctx.beginPath(); ctx.rect(Math.max(0, a) + 2, y, Math.min(W, b) - Math.max(0, a) - 4, ROW_H); ctx.clip();
          ctx.fillStyle = "#222"; ctx.fillText(text, Math.max(0, a) + 4, y + ROW_H / 2 + 1);
          ctx.restore();
        }
        drawn++;
      }
    }
    // highlights (the minimal failing sub-history, the failing op, the focused op)
    hlCalls.forEach(function (c) { outline(c, HL[c], r0, r1); });
    if (focused >= 0) outline(focused, 8, r0, r1);
    ctx.restore();
    drawHead();
    drawOverview();
    canvas.dataset.drawnCalls = String(drawn);
    inner.style.transform = "translateY(" + (-view.y) + "px)";
    if (!document.body.dataset.ready) {
      // script start to the first frame (parse, decode, index, draw), for benchmarks
      document.body.dataset.firstDrawMs = (window.performance.now() - T0).toFixed(1);
      document.body.dataset.ready = "1";
    }
    canvas.dataset.drawMs = (window.performance.now() - tDraw).toFixed(1);
  }

  function outline(c, role, r0, r1) {
    var r = row[c];
    if (r < r0 || r > r1) return;
    var a = toPx(start[c]), b = toPx(boxEnd(c));
    if (b < -4 || a > W + 4) return;
    var y = HEAD_H + r * ROW_H - view.y;
    var w = Math.max(3, b - a);
    if (role & 2) { ctx.strokeStyle = "#d00000"; ctx.lineWidth = 3; }
    else if (role & 1) { ctx.strokeStyle = "#7a1fd1"; ctx.lineWidth = 2; }
    else if (role & 4) { ctx.strokeStyle = "#1f5fbf"; ctx.lineWidth = 2; ctx.setLineDash([4, 2]); }
    else { ctx.strokeStyle = "#0060ff"; ctx.lineWidth = 3; }
    ctx.strokeRect(a - 1, y + 1, w + 2, ROW_H - 2);
    ctx.setLineDash([]);
    if ((role & 4) && (role & 3)) {  // also the last ok op: a dashed inner line
      ctx.strokeStyle = "#1f5fbf"; ctx.lineWidth = 1; ctx.setLineDash([4, 2]);
      ctx.strokeRect(a + 2, y + 4, Math.max(1, w - 4), ROW_H - 8);
      ctx.setLineDash([]);
    }
    if (role & 2) {
      ctx.fillStyle = "#d00000";
      ctx.beginPath(); ctx.moveTo(a - 6, y + 1); ctx.lineTo(a, y + ROW_H / 2); ctx.lineTo(a - 6, y + ROW_H - 1); ctx.fill();
    }
  }

  function drawHead() {
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, HEAD_H);
    ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, HEAD_H - 0.5); ctx.lineTo(W, HEAD_H - 0.5); ctx.stroke();
    // axis
    var step = niceStep(view.x1 - view.x0, W);
    var t = Math.ceil(view.x0 / step) * step;
    ctx.fillStyle = "#555"; ctx.font = "10px system-ui, sans-serif"; ctx.textBaseline = "middle";
    for (; t <= view.x1; t += step) {
      var px = Math.round(toPx(t)) + 0.5;
      ctx.strokeStyle = "#ccc"; ctx.beginPath(); ctx.moveTo(px, AXIS_H - 5); ctx.lineTo(px, AXIS_H); ctx.stroke();
      ctx.fillText(fmtX(t, step), px + 2, AXIS_H / 2 - 1);
    }
    // fault lanes
    T.faults.forEach(function (f) {
      var a = toPx(f.s), b = toPx(f.e);
      if (b < 0 || a > W) return;
      var y = AXIS_H + f.lane * LANE_H;
      ctx.fillStyle = "rgba(" + LANE_COLORS[f.lane % LANE_COLORS.length] + ",0.55)";
      ctx.fillRect(a, y + 1, Math.max(2, b - a), LANE_H - 2);
      if (b - a > 30) {
        ctx.save(); ctx.beginPath(); ctx.rect(Math.max(0, a), y, Math.min(W, b) - Math.max(0, a), LANE_H); ctx.clip();
        ctx.fillStyle = "#000"; ctx.font = "10px system-ui, sans-serif";
        ctx.fillText(f.name + ": " + f.value + (f.open ? " (not healed)" : ""), Math.max(0, a) + 3, y + LANE_H / 2);
        ctx.restore();
      }
    });
    if (eventLane >= 0) {
      var y = AXIS_H + eventLane * LANE_H;
      T.nemesisEvents.forEach(function (ev) {
        var px = toPx(ev.x);
        if (px < -2 || px > W + 2) return;
        ctx.fillStyle = "#444"; ctx.fillRect(px - 1, y + 2, 2, LANE_H - 4);
      });
    }
  }

  // ---- hit testing and the tooltip ---------------------------------------------------------
  function callAt(mx, my) {
    if (my < HEAD_H) return -1;
    var r = Math.floor((my - HEAD_H + view.y) / ROW_H);
    if (r < 0 || r >= NROWS) return -1;
    var list = rows[r], x = toX(mx), tol = (view.x1 - view.x0) / W * 3;
    var best = -1, bestD = Infinity;
    for (var k = firstInRow(list, x - tol); k < list.length; k++) {
      var c = list[k];
      if (start[c] > x + tol) break;
      var e = reachEnd(c);
      var d = x < start[c] ? start[c] - x : x > e ? x - e : 0;
      if (d <= tol && d < bestD) { best = c; bestD = d; }
    }
    return best;
  }
  function faultAt(mx, my) {
    if (my < AXIS_H || my >= HEAD_H) return null;
    var lane = Math.floor((my - AXIS_H) / LANE_H), x = toX(mx), tol = (view.x1 - view.x0) / W * 3;
    if (lane === eventLane) {
      for (var i = 0; i < T.nemesisEvents.length; i++) {
        var ev = T.nemesisEvents[i];
        if (Math.abs(ev.x - x) <= tol) return ["nemesis op #" + ev.id, ev.f + " " + ev.value, "at " + fmtTime(ev.x)];
      }
      return null;
    }
    for (i = 0; i < T.faults.length; i++) {
      var f = T.faults[i];
      if (f.lane === lane && x >= f.s - tol && x <= f.e + tol) {
        return ["fault: " + f.name, "value: " + (f.full || f.value), f.stopValue ? "on stop: " + f.stopValue : "",
          "from " + fmtTime(f.s) + " (op #" + f.startId + ")",
          f.open ? "never healed (runs to the end of the history)" : "to " + fmtTime(f.e) + " (op #" + f.endId + ")"
        ].filter(Boolean);
      }
    }
    return null;
  }
  function describe(c) {
    var lines = [];
    var cid = C.c[c] === null ? null : C.id[c] + C.c[c];
    lines.push("op #" + C.id[c] + (cid !== null ? " → #" + cid : "") + "   process " + T.processes[row[c]] +
      (C.k[c] >= 0 ? "   key " + T.keyNames[C.k[c]] : ""));
    lines.push("f: " + T.fNames[C.f[c]] + "   value: " + C.v[c]);
    if (C.iv[c]) lines.push("invoked with: " + C.iv[c]);
    lines.push("outcome: " + OUTCOME[C.o[c]]);
    lines.push("invoked: " + fmtTime(start[c]));
    if (!isNaN(end[c])) {
      lines.push((C.o[c] === "i" ? "info at: " : "completed: ") + fmtTime(end[c]) +
        (T.axis === "time" ? "   (took " + ((end[c] - start[c]) / 1e6).toFixed(3) + " ms)" : ""));
    } else lines.push("never completed");
    if (C.err[c] !== undefined) lines.push("error: " + C.err[c]);
    return lines;
  }
  function showTip(lines, role, ev) {
    tooltip.textContent = "";
    if (role) { var s = document.createElement("div"); s.className = "role"; s.textContent = role; tooltip.appendChild(s); }
    tooltip.appendChild(document.createTextNode(lines.join("\n")));
    tooltip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var tw = tooltip.offsetWidth, th = tooltip.offsetHeight;
    if (x + tw > window.innerWidth - 4) x = ev.clientX - tw - 10;
    if (y + th > window.innerHeight - 4) y = ev.clientY - th - 10;
    tooltip.style.left = Math.max(2, x) + "px"; tooltip.style.top = Math.max(2, y) + "px";
  }

  // ---- interaction -----------------------------------------------------------------------
  function zoomAt(factor, px) {
    var x = toX(px);
    view.x0 = x - (x - view.x0) * factor;
    view.x1 = x + (view.x1 - x) * factor;
    clampView(); schedule();
  }
  canvas.addEventListener("wheel", function (ev) {
    var dx = ev.deltaX, dy = ev.deltaY;
    if (ev.deltaMode === 1) { dx *= ROW_H; dy *= ROW_H; }
    if (ev.ctrlKey || ev.metaKey) {
      ev.preventDefault(); zoomAt(Math.exp(dy * 0.002), ev.offsetX); return;
    }
    if (ev.shiftKey || Math.abs(dx) > Math.abs(dy)) {
      ev.preventDefault();
      var d = (ev.shiftKey && !dx ? dy : dx) / W * (view.x1 - view.x0);
      view.x0 += d; view.x1 += d; clampView(); schedule(); return;
    }
    var before = view.y;
    view.y += dy; clampView();
    if (view.y !== before) { ev.preventDefault(); schedule(); }
  }, { passive: false });
  var drag = null;
  canvas.addEventListener("mousedown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, x0: view.x0, x1: view.x1, vy: view.y, moved: false };
    canvas.classList.add("dragging");
  });
  window.addEventListener("mouseup", function () { drag = null; canvas.classList.remove("dragging"); });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var dxp = ev.clientX - drag.x, dyp = ev.clientY - drag.y;
    if (Math.abs(dxp) + Math.abs(dyp) > 2) drag.moved = true;
    var d = -dxp / W * (drag.x1 - drag.x0);
    view.x0 = drag.x0 + d; view.x1 = drag.x1 + d; view.y = drag.vy - dyp;
    clampView(); schedule();
  });
  canvas.addEventListener("mousemove", function (ev) {
    if (drag && drag.moved) { tooltip.hidden = true; return; }
    var c = callAt(ev.offsetX, ev.offsetY);
    if (c >= 0) { showTip(describe(c), roleText(HL[c] || 0), ev); return; }
    var f = faultAt(ev.offsetX, ev.offsetY);
    if (f) { showTip(f, "", ev); return; }
    tooltip.hidden = true;
  });
  canvas.addEventListener("mouseleave", function () { tooltip.hidden = true; });
  canvas.addEventListener("dblclick", function (ev) { zoomAt(ev.shiftKey ? 2 : 0.5, ev.offsetX); });
  function overviewJump(ev) {
    var rect = overview.getBoundingClientRect();
    var x = X_MIN + (ev.clientX - rect.left) / rect.width * (X_MAX - X_MIN);
    var span = view.x1 - view.x0;
    view.x0 = x - span / 2; view.x1 = x + span / 2; clampView(); schedule();
  }
  var odrag = false;
  overview.addEventListener("mousedown", function (ev) { odrag = true; overviewJump(ev); });
  overview.addEventListener("mousemove", function (ev) { if (odrag) overviewJump(ev); });
  window.addEventListener("mouseup", function () { odrag = false; });
  document.getElementById("zoom-in").addEventListener("click", function () { zoomAt(0.5, W / 2); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoomAt(2, W / 2); });
  document.getElementById("zoom-fit").addEventListener("click", function () { fit(); clampView(); schedule(); });
  document.addEventListener("keydown", function (ev) {
    if (ev.target && /INPUT|TEXTAREA|SELECT/.test(ev.target.tagName)) return;
    if (ev.key === "+" || ev.key === "=") zoomAt(0.5, W / 2);
    else if (ev.key === "-") zoomAt(2, W / 2);
    else if (ev.key === "0") { fit(); clampView(); schedule(); }
  });

  // Focus: zoom to a span of calls and bring the row of the first one into view.
  function focusCalls(list, primary, mark) {
    if (!list.length) return;
    var a = Infinity, b = -Infinity;
    list.forEach(function (c) { a = Math.min(a, start[c]); b = Math.max(b, isNaN(end[c]) ? start[c] : end[c]); });
    var span = Math.max(b - a, T.axis === "time" ? 1e5 : 4);
    view.x0 = a - span * 0.15; view.x1 = b + span * 0.15;
    var rr = row[primary];
    var top = rr * ROW_H, bottom = top + ROW_H;
    if (top < view.y || bottom > view.y + rowsH()) view.y = top - rowsH() / 2;
    focused = mark ? primary : -1;
    clampView(); schedule();
  }
  Array.prototype.forEach.call(document.querySelectorAll("a.op-ref"), function (a) {
    a.addEventListener("click", function () {
      var c = callOfOp.get(Number(a.dataset.op));
      if (c !== undefined) focusCalls([c], c, !(HL[c] & 2));
    });
  });
  var showBtn = document.getElementById("show-anomaly");
  function showAnomaly() {
    var failing = hlCalls.filter(function (c) { return HL[c] & 2; });
    if (!hlCalls.length) return;
    var primary = failing.length ? failing[0] : hlCalls[0];
    if (keySelect) setKeyFilter(C.k[primary]);
    focusCalls(hlCalls, primary, false);
  }
  // "Jump to the anomaly" scrolls to the section (plain link) and puts it in the timeline too.
  var jump = document.getElementById("jump-to-anomaly");
  if (jump) jump.addEventListener("click", function () { showAnomaly(); });
  if (showBtn) showBtn.addEventListener("click", function () {
    showAnomaly();
    document.getElementById("timeline-section").scrollIntoView();
  });

  if (!N) {
    var empty = document.createElement("p");
    empty.className = "note"; empty.id = "no-calls";
    empty.textContent = "No client operations in this history.";
    timeline.parentNode.insertBefore(empty, timeline);
  }
  // For people poking at the page from the console, and for the browser tests.
  window.kvcheckReport = {
    view: view, callAt: callAt, describe: describe, showAnomaly: showAnomaly, toPx: toPx,
    rowY: function (r) { return HEAD_H + r * ROW_H - view.y + ROW_H / 2; },
    callOfOp: function (id) { var c = callOfOp.get(id); return c === undefined ? -1 : c; },
    rowOf: function (c) { return row[c]; }, start: function (c) { return start[c]; },
    redraw: draw, setKeyFilter: setKeyFilter
  };
  window.addEventListener("resize", resize);
  fit();
  resize();
  draw();
})();
