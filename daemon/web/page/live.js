// emotiond's live page: everything from /stream (Server-Sent Events carrying the payloads MQTT
// gets: state, events, stats, camera/status; plus hello = what to draw from the config, and
// rules = the rules' running figures). Plain DOM, no library: the device serves it as it is.
"use strict";

const WINDOW_S = 180;           // the plots' time span
const EVENTS_SHOWN = 50;
const COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"];
const FACE_KEYS = new Set(["track_id", "emotion", "confidence", "probs"]);
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const fmt = (v, digits = 2) => (v === null || v === undefined) ? "—" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(digits)) : String(v));
const clock = (iso) => iso ? new Date(iso).toLocaleTimeString([], {hour12: false}) : "—";
const pill = (id, state, text) => { const p = $(id); p.dataset.state = state; p.textContent = text; };

const page = { config: null, labels: [], history: [], rules: {}, events: [], open: new Map(), draft: [], drawing: false, lastPose: null };

// -- the config: zones, the seat, YAML to copy --------------------------------------------------
function polygonYaml(name, pts) {
  const list = pts.map(([x, y]) => `[${x.toFixed(3)}, ${y.toFixed(3)}]`).join(", ");
  return `zones:\n  ${name}:\n    polygon: [${list}]`;
}

function drawZones() {
  const svg = $("zones-svg"), cfg = page.config;
  svg.replaceChildren();
  if (!cfg) return;
  const seatName = cfg.seat && cfg.seat.name;
  for (const [name, pts] of Object.entries(cfg.zones)) {
    const seat = name === seatName;
    svg.append(svgEl("polygon", {points: pts.map((p) => p.join(",")).join(" "), class: "zone", "data-zone": name,
      fill: seat ? "rgba(80,200,60,0.12)" : "rgba(40,160,255,0.10)", stroke: seat ? "#50c83c" : "none",
      "stroke-width": 2, "vector-effect": "non-scaling-stroke"}));
  }
  if (cfg.seat && cfg.seat.polygon && !seatName) {  // a rectangle in tracker.primary_zone: not drawn by the preview
    svg.append(svgEl("polygon", {points: cfg.seat.polygon.map((p) => p.join(",")).join(" "), class: "zone", "data-zone": "seat",
      fill: "rgba(80,200,60,0.12)", stroke: "#50c83c", "stroke-width": 2, "stroke-dasharray": "6 4", "vector-effect": "non-scaling-stroke"}));
  }
  if (page.draft.length) {
    svg.append(svgEl("polygon", {points: page.draft.map((p) => p.join(",")).join(" "), fill: "rgba(255,220,0,0.15)",
      stroke: "#ffdc00", "stroke-width": 2, "vector-effect": "non-scaling-stroke"}));
  }
  const box = $("zones");
  box.replaceChildren();
  for (const [name, pts] of Object.entries(cfg.zones)) {
    box.append(el("div", {}, name + (name === seatName ? " (the seat zone: tracker.primary_zone)" : "")), el("pre", {"data-zone": name}, polygonYaml(name, pts)));
  }
  if (cfg.seat && cfg.seat.polygon && !seatName) {
    const [[x0, y0], , [x1, y1]] = cfg.seat.polygon;
    box.append(el("div", {}, "seat (tracker.primary_zone, a rectangle)"), el("pre", {}, `tracker:\n  primary_zone: [${x0}, ${y0}, ${x1}, ${y1}]`));
  }
  if (!box.children.length) box.append(el("small", {}, "no zones configured (the primary face is the largest anywhere)"));
  const yaml = $("draft-yaml");
  yaml.hidden = page.draft.length < 3;
  yaml.textContent = polygonYaml("new_zone", page.draft);
}

function setupDrawing() {
  const svg = $("zones-svg");
  $("draw").onclick = () => { page.drawing = !page.drawing; $("draw").classList.toggle("on", page.drawing); svg.classList.toggle("drawing", page.drawing); };
  $("undo").onclick = () => { page.draft.pop(); drawZones(); };
  $("clear").onclick = () => { page.draft = []; drawZones(); };
  svg.addEventListener("click", (ev) => {
    if (!page.drawing) return;
    const r = svg.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)), y = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
    page.draft.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
    drawZones();
  });
}

// -- the primary face -----------------------------------------------------------------------------
function roadZone() {
  // The distraction rule's zone when there is one (it is the one "away from road" means), else
  // the fatigue rule's; the head-zone defaults otherwise.
  const figures = Object.values(page.rules);
  return figures.find((r) => r.type === "driver_distraction" && "yaw_deg" in r) || figures.find((r) => "yaw_deg" in r) ||
    {calibrated: false, road_yaw_deg: 0, road_pitch_deg: 0, yaw_deg: 30, pitch_down_deg: 15, pitch_up_deg: 15, configured: false};
}

function angles(primary) {
  // Every signal that gives a direction (yaw and pitch in degrees): head_pose, and gaze or any
  // later one, without code of its own.
  const out = [];
  for (const [key, v] of Object.entries(primary || {})) {
    if (!FACE_KEYS.has(key) && v && typeof v === "object" && typeof v.yaw === "number" && typeof v.pitch === "number") out.push([key, v.yaw, v.pitch]);
  }
  return out;
}

function isAway(primary, zone) {
  const head = primary && primary.head_pose;
  if (!head || typeof head.yaw !== "number") return null;
  // The rules' road zone is an ellipse around the road direction (daemon/rules/head.py).
  const dy = head.yaw - zone.road_yaw_deg, dp = head.pitch - zone.road_pitch_deg;
  const ny = dy / zone.yaw_deg, np = dp / (dp < 0 ? zone.pitch_down_deg : zone.pitch_up_deg);
  return ny * ny + np * np > 1;
}

function drawPose(primary) {
  const svg = $("pose"), z = roadZone();
  svg.replaceChildren();
  for (let x = -60; x <= 60; x += 30) svg.append(svgEl("line", {x1: x, y1: -45, x2: x, y2: 45, stroke: "#262a30", "stroke-width": 0.5}));
  for (let y = -30; y <= 30; y += 30) svg.append(svgEl("line", {x1: -60, y1: y, x2: 60, y2: y, stroke: "#262a30", "stroke-width": 0.5}));
  // SVG's y grows downwards; pitch > 0 is up.
  // Two half-ellipses (up and down may differ), as the rules judge it.
  const cx = z.road_yaw_deg, cy = -z.road_pitch_deg, a = z.yaw_deg;
  svg.append(svgEl("path", {id: "road-zone",
    d: `M ${cx - a} ${cy} A ${a} ${z.pitch_up_deg} 0 0 1 ${cx + a} ${cy} A ${a} ${z.pitch_down_deg} 0 0 1 ${cx - a} ${cy} Z`, fill: z.calibrated ? "rgba(80,200,60,0.18)" : "rgba(255,200,0,0.12)",
    stroke: z.calibrated ? "#50c83c" : "#c9a400", "stroke-width": 0.7, "stroke-dasharray": z.calibrated ? "" : "3 2"}));
  svg.append(svgEl("circle", {cx: z.road_yaw_deg, cy: -z.road_pitch_deg, r: 1.5, fill: "none", stroke: "#aaa", "stroke-width": 0.5}));
  const t = svgEl("text", {x: -58, y: 43, "font-size": 6, fill: "#778"}); t.textContent = "yaw ← right · left →  (pitch ↑)"; svg.append(t);
  const away = isAway(primary, z);
  for (const [key, yaw, pitch] of angles(primary)) {
    const head = key === "head_pose";
    svg.append(svgEl("circle", {class: "pose-dot", "data-signal": key, cx: Math.max(-60, Math.min(60, yaw)), cy: -Math.max(-45, Math.min(45, pitch)),
      r: head ? 3 : 2.2, fill: head ? (away ? "#e5484d" : "#50c83c") : "#4aa3ff", stroke: "#fff", "stroke-width": 0.4}));
    const label = svgEl("text", {x: Math.max(-58, Math.min(40, yaw + 4)), y: -pitch + 2, "font-size": 5, fill: "#ccd"});
    label.textContent = key; svg.append(label);
  }
  const road = $("road");
  road.replaceChildren();
  const rows = [
    ["calibration", z.configured === false ? "no driver rule" : (z.calibrated ? "calibrated" : `calibrating (${fmt(z.calibration_done_s, 1)} of ${fmt(z.calibration_s, 0)} s)`)],
    ["road direction", `yaw ${fmt(z.road_yaw_deg, 1)}°, pitch ${fmt(z.road_pitch_deg, 1)}°`],
    ["road zone", `an ellipse: ±${fmt(z.yaw_deg, 0)}° aside, ${fmt(z.pitch_down_deg, 0)}° down, ${fmt(z.pitch_up_deg, 0)}° up`],
    ["head", away === null ? "—" : (away ? "away from road" : "on the road")],
  ];
  if (z.eyes !== undefined) rows.push(["eyes", z.eyes === null ? "unreadable" : z.eyes + (z.eyes_as ? ` (${z.eyes_as.replace("_", " ")})` : "")]);
  const fatigue = Object.values(page.rules).find((r) => r.type === "driver_fatigue");
  if (fatigue) rows.push(["PERCLOS", fatigue.perclos === null ? `collecting (${fmt(fatigue.perclos_window_s, 0)} s window)` : `${(100 * fatigue.perclos).toFixed(1)} % of ${fmt(fatigue.perclos_window_s, 0)} s`],
    ["eyes closed for", `${fmt(fatigue.closure_s, 1)} s`]);
  for (const [k, v] of rows) { const tr = el("tr"); tr.append(el("td", {}, k), el("td", {id: "road-" + k.replace(/\W+/g, "-")}, v)); road.append(tr); }
}

function showFace(primary) {
  $("emotion").textContent = primary ? (primary.emotion || "(not classified)") : "no face";
  $("emotion-conf").textContent = primary && primary.emotion ? `${Math.round(100 * primary.confidence)} %` : "";
  $("track").textContent = primary ? `track #${primary.track_id}` : "";
  const probs = $("probs");
  probs.replaceChildren();
  for (const label of page.labels) {
    const p = primary && primary.probs ? primary.probs[label] || 0 : 0;
    const bar = el("div", {class: "bar"});
    const i = el("i"); i.style.width = `${Math.round(200 * p)}px`; i.style.background = COLORS[page.labels.indexOf(label) % COLORS.length];
    bar.append(el("span", {}, label), i, el("b", {}, `${(100 * p).toFixed(0)} %`));
    probs.append(bar);
  }
  // Every face signal in the payload, by its key: eye_closed, head_pose, gaze, ... (null: not readable now).
  const table = $("signals");
  table.replaceChildren();
  for (const [key, v] of Object.entries(primary || {})) {
    if (FACE_KEYS.has(key)) continue;
    if (v && typeof v === "object") {
      for (const [field, x] of Object.entries(v)) {
        const tr = el("tr"); tr.append(el("td", {}, `${key}.${field}`), el("td", {id: `sig-${key}-${field}`}, fmt(x))); table.append(tr);
      }
    } else {
      const tr = el("tr"); tr.append(el("td", {}, key), el("td", {id: `sig-${key}`}, v === null ? "— (not readable)" : fmt(v))); table.append(tr);
    }
  }
  page.primary = primary;
  drawPose(primary);
}

// -- plots ----------------------------------------------------------------------------------------
function remember(state) {
  const t = Date.parse(state.ts) / 1000, p = state.primary;
  page.history.push({t, probs: p && p.probs, eyes: p ? p.eye_closed : null, away: isAway(p, roadZone())});
  while (page.history.length && page.history[0].t < t - WINDOW_S) page.history.shift();
}

function plot(id, series, lo, hi) {
  const c = $(id), g = c.getContext("2d"), w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  const hist = page.history;
  if (!hist.length) return;
  // The span grows with the history up to WINDOW_S, so a page just opened shows its seconds.
  const t1 = hist[hist.length - 1].t, span = Math.max(30, Math.min(WINDOW_S, t1 - hist[0].t));
  const x = (t) => w - (t1 - t) / span * w, y = (v) => h - 2 - (v - lo) / (hi - lo) * (h - 4);
  g.strokeStyle = "#262a30"; g.beginPath(); for (let s = 10; s < span; s += 10) { g.moveTo(x(t1 - s), 0); g.lineTo(x(t1 - s), h); } g.stroke();
  for (const {get, color, fill} of series) {
    g.strokeStyle = color; g.fillStyle = color; g.lineWidth = 1.5; g.beginPath();
    let pen = false;
    for (const s of hist) {
      const v = get(s);
      if (v === null || v === undefined) { pen = false; continue; }
      if (fill) { if (v) g.fillRect(x(s.t) - 1, 0, 3, h); continue; }
      if (pen) g.lineTo(x(s.t), y(v)); else g.moveTo(x(s.t), y(v));
      pen = true;
    }
    if (!fill) g.stroke();
  }
}

function drawPlots() {
  plot("plot-emotion", page.labels.map((label, i) => ({get: (s) => s.probs ? s.probs[label] : null, color: COLORS[i % COLORS.length]})), 0, 1);
  plot("plot-eyes", [{get: (s) => s.eyes, color: "#f5a623"}], 0, 1);
  plot("plot-away", [{get: (s) => s.away, color: "#e5484d", fill: true}], 0, 1);
  $("plot-window").textContent = `up to ${WINDOW_S / 60} min, newest at the right`;
}

// -- alerts and events --------------------------------------------------------------------------
function showEvent(ev, fresh) {
  if (ev.phase === "end") page.open.delete(ev.id); else page.open.set(ev.id, ev);
  const tbody = $("events").tBodies[0];
  const tr = el("tr", {class: fresh ? "new" : "", "data-type": ev.type, "data-phase": ev.phase, "data-id": ev.id});
  tr.append(el("td", {}, clock(ev.ts)), el("td", {}, `${ev.type}${ev.rule && ev.rule !== ev.type ? " (" + ev.rule + ")" : ""}`), el("td", {}, ev.phase),
    el("td", {class: "level"}, ev.level || ""), el("td", {}, clock(ev.started_at)), el("td", {}, clock(ev.ended_at)),
    el("td", {class: "details"}, JSON.stringify(ev.details)));
  tbody.prepend(tr);
  while (tbody.rows.length > EVENTS_SHOWN) tbody.deleteRow(-1);
  const open = $("open");
  open.replaceChildren();
  for (const a of page.open.values()) {
    const d = el("div", {class: "alert", "data-id": a.id});
    d.append(el("b", {}, a.type), " ", el("span", {class: "level"}, a.level || ""), ` since ${clock(a.started_at)} · ${a.phase} · `,
      el("small", {}, JSON.stringify(a.details)));
    open.append(d);
  }
  if (!page.open.size) open.append(el("small", {}, "none"));
  $("open-count").textContent = `${page.open.size} open`;
}

function showRules(rules) {
  page.rules = rules;
  const box = $("rules");
  box.replaceChildren();
  for (const [name, figures] of Object.entries(rules)) {
    box.append(el("div", {}, `${name} (${figures.type})`));
    const table = el("table", {class: "kv", "data-rule": name});
    for (const [k, v] of Object.entries(figures)) {
      if (k === "type") continue;
      if (k === "zones" && v && typeof v === "object") {  // visitors per zone (retail)
        for (const [zone, z] of Object.entries(v)) {
          const tr = el("tr"); tr.append(el("td", {}, `zone ${zone}`), el("td", {"data-zone": zone}, Object.entries(z).map(([a, b]) => `${a} ${fmt(b)}`).join(", "))); table.append(tr);
        }
        continue;
      }
      const tr = el("tr"); tr.append(el("td", {}, k), el("td", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v, 3))); table.append(tr);
    }
    box.append(table);
  }
  if (!box.children.length) box.append(el("small", {}, "no rule reports running figures"));
  // The road zone and calibration come from these figures: redraw them now, not at the next state.
  if (page.primary !== undefined) drawPose(page.primary);
}

// -- health ---------------------------------------------------------------------------------------
function showCamera(online) {
  pill("camera", online ? "ok" : "bad", online ? "camera online" : "camera offline");
  const cell = $("health-camera");
  if (cell) cell.textContent = online ? "online" : "offline";
}

function showStats(s) {
  showCamera(s.camera_online);
  pill("broker", s.broker_connected ? "ok" : "bad", s.broker_connected ? "broker connected" : "broker offline");
  const model = s.model || {};
  const rows = [["camera", s.camera_online ? "online" : "offline"], ["broker", s.broker_connected ? "connected" : "not connected"],
    ["fps", fmt(s.fps, 1)], ["frames", fmt(s.frames)], ["skipped frames", fmt(s.skipped)], ["rejected frames", fmt(s.frames_rejected)],
    ["faces", fmt(s.faces)], ["RSS", `${fmt(s.rss_mb, 1)} MB (peak ${fmt(s.peak_rss_mb, 1)})`], ["delegate", fmt(s.delegate)],
    ["model", model.model ? `${model.model} (${model.quantization})` : "—"], ["outbox backlog", fmt(s.backlog)],
    ["uptime", `${fmt(s.uptime_s, 0)} s`], ["as of", clock(s.ts)]];
  const table = $("health");
  table.replaceChildren();
  for (const [k, v] of rows) { const tr = el("tr"); tr.append(el("td", {}, k), el("td", {id: "health-" + k.replace(/\W+/g, "-")}, v)); table.append(tr); }
  const tbody = $("stages").tBodies[0];
  tbody.replaceChildren();
  for (const [stage, q] of Object.entries(s.latency_ms || {})) {
    const tr = el("tr"); tr.append(el("td", {}, stage), el("td", {}, fmt(q.p50)), el("td", {}, fmt(q.p99))); tbody.append(tr);
  }
}

// -- the stream -----------------------------------------------------------------------------------
function connect() {
  const es = new EventSource("stream");
  let replaying = true, stopped = false;
  es.onopen = () => { stopped = false; pill("stream-state", "ok", "live"); };
  // After "bye" the browser keeps retrying (a restarted daemon is picked up); the pill keeps saying why.
  es.onerror = () => { if (!stopped) pill("stream-state", "wait", es.readyState === EventSource.CLOSED ? "no stream (token?)" : "reconnecting"); };
  const on = (name, fn) => es.addEventListener(name, (m) => fn(JSON.parse(m.data)));
  on("hello", (cfg) => {
    page.config = cfg; page.labels = cfg.labels; page.open.clear(); replaying = true;
    $("events").tBodies[0].replaceChildren();
    $("device").textContent = cfg.device; document.title = `emotiond ${cfg.device}`;
    drawZones();
  });
  on("state", (s) => { replaying = false; showFace(s.primary); remember(s); });
  on("events", (ev) => showEvent(ev, !replaying));
  on("stats", showStats);
  on("camera/status", (c) => showCamera(c.online));
  on("rules", (r) => showRules(r.rules));
  on("bye", () => { stopped = true; pill("stream-state", "bad", "daemon stopped"); });
}

setupDrawing();
setInterval(drawPlots, 1000);
connect();
