// The DOM around the canvas: status bar, tooltip, search, details panel.
//
// Every value shown here comes from the graph or the node API, i.e. from
// container names, labels and commands anyone can choose: it is written with
// textContent (or drawn on a canvas) only, never as HTML.

import { connectionRate, shortBytes, shortNumber } from "./graph.js";

export function text(tag, value, className) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = value == null ? "" : String(value);
  return el;
}

function el(tag, className, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

const num = (v) => Number(v) || 0;
const perSecond = (v) => `${shortNumber(v)}/s`;
const bytesPerSecond = (v) => `${shortBytes(v)}/s`;

export class StatusBar {
  constructor(root) {
    this.root = root;
    this.connText = root.querySelector(".conn-text");
    this.counts = root.querySelector(".counts");
    this.level = root.querySelector(".level");
    this.updated = root.querySelector(".updated");
    this.ruleFailures = root.querySelector(".rule-failures");
  }

  setState(state, message) {
    this.root.dataset.state = state;
    this.connText.textContent = message;
  }

  setLevel(level) {
    this.level.textContent = `level: ${level}`;
  }

  setCounts(nodes, edges, hidden) {
    this.root.dataset.nodes = String(nodes);
    this.root.dataset.edges = String(edges);
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    const extra = hidden ? ` (${hidden} hidden by filters)` : "";
    this.counts.textContent = `${plural(nodes, "node")} · ${plural(edges, "edge")}${extra}`;
  }

  touch() {
    this.updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  // The analyzer's rule checks that raised lately (GET /api/rule-failures/):
  // a rule that fails finds nothing, which the map would show as all well.
  setRuleFailures(failures) {
    if (!this.ruleFailures) return;
    const list = Array.isArray(failures) ? failures.filter((f) => f && typeof f === "object") : [];
    const lines = list.map(ruleFailureText);
    const failing = list.some((f) => f.failing === true);
    const shown = lines.slice(0, RULE_FAILURES_SHOWN).join(" · ");
    const more = lines.length > RULE_FAILURES_SHOWN ? ` · and ${lines.length - RULE_FAILURES_SHOWN} more` : "";
    this.ruleFailures.hidden = list.length === 0;
    this.ruleFailures.dataset.count = String(list.length);
    this.ruleFailures.classList.toggle("failing", failing);
    this.ruleFailures.textContent = list.length ? `${failing ? "rule failing" : "rule failed earlier"}: ${shown}${more}` : "";
    this.ruleFailures.title = lines.join("\n");
  }
}

const RULE_FAILURES_SHOWN = 2;
const RULE_FAILURES_POLL_MS = 5000;

// One failed rule check in a line: its rules, how often, when last, the error.
export function ruleFailureText(f) {
  const rules = Array.isArray(f.rules) && f.rules.length ? f.rules.join(", ") : String(f.check ?? "?");
  const when = new Date(String(f.last_failed_at ?? ""));
  const last = Number.isNaN(when.getTime()) ? "" : `, last at ${when.toLocaleTimeString()}`;
  const error = f.error ?? f.error_type;
  return `${rules} raised ${shortNumber(num(f.count))} times${last}${error ? `: ${error}` : ""}`;
}

// Keeps the status bar's failing rules current (a login needed: a refusal or
// an unreachable server leaves the bar as it was until the next poll).
export function watchRuleFailures(statusBar, periodMs = RULE_FAILURES_POLL_MS) {
  const poll = async () => {
    if (document.hidden) return;
    try {
      const response = await fetch("/api/rule-failures/", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) statusBar.setRuleFailures((await response.json()).rule_failures);
    } catch {
      // The next poll tries again.
    }
  };
  poll();
  return window.setInterval(poll, periodMs);
}

// Rates and errors of an edge, as [term, value] rows.
export function edgeRows(a) {
  const rows = [
    ["connections/s", perSecond(connectionRate(a))],
    ["failed/s", perSecond(a.failed_per_s)],
    ["sent", bytesPerSecond(a.bytes_sent_per_s)],
    ["received", bytesPerSecond(a.bytes_received_per_s)],
    ["connections (total)", shortNumber(a.connections)],
    ["failed (total)", shortNumber(a.failed)],
  ];
  const errors = [
    ["refused", a.failed_refused],
    ["timed out", a.failed_timeout],
    ["unreachable", a.failed_unreachable],
    ["other failures", a.failed_other],
    ["resets", a.resets],
    ["retransmits", a.retransmits],
  ];
  for (const [term, value] of errors) if (num(value)) rows.push([term, shortNumber(value)]);
  if (num(a.accepts)) rows.push(["accepted (total)", shortNumber(a.accepts)]);
  if (num(a.connect_latency_count)) {
    const ms = num(a.connect_latency_us_sum) / num(a.connect_latency_count) / 1000;
    rows.push(["connect latency", `${ms.toFixed(2)} ms`]);
  }
  rows.push(["status", a.status ?? "ok"]);
  return rows;
}

// A replayed host's mark (manage.py replay): its capture file and when it was recorded.
function replayText(replay) {
  if (!replay || typeof replay !== "object" || !replay.file) return "";
  const when = Number(replay.recorded_at);
  return Number.isFinite(when) ? `${replay.file}, recorded ${new Date(when * 1000).toISOString()}` : String(replay.file);
}

// Identity of a node as [term, value] rows.
export function identityRows(a) {
  const rows = [
    ["type", a.type],
    ["status", a.status],
  ];
  const published = Array.isArray(a.published)
    ? a.published
        .map((p) => (p && typeof p === "object" ? `${p.ip ?? ""}:${p.port ?? ""} → ${p.target ?? ""}/${p.proto ?? "tcp"}` : ""))
        .filter(Boolean)
        .join(", ")
    : "";
  const optional = [
    ["state", a.state],
    ["exit code", a.state === "exited" ? a.exit_code : ""],
    ["image", a.image],
    ["command", a.command],
    ["compose service", a.compose_service],
    ["pod", a.k8s_pod],
    // A host process: its pids, its command line, and why it has no name
    // when the collector could not find one.
    ["pids", Array.isArray(a.pids) ? a.pids.join(", ") : ""],
    ["command line", a.cmdline],
    ["no name because", a.unnamed_reason],
    ["host", a.host],
    ["IPs", Array.isArray(a.ips) ? a.ips.join(", ") : ""],
    ["ports", Array.isArray(a.ports) ? a.ports.join(", ") : ""],
    ["published", published],
    ["port", a.port !== undefined ? `${a.port}/${a.proto ?? "tcp"}` : ""],
    ["addresses", Array.isArray(a.addresses) ? a.addresses.join(", ") : ""],
    ["kernel", a.kernel],
    ["collector", a.mode ? `${a.mode}${a.mode_reason ? ` (${a.mode_reason})` : ""}` : ""],
    ["replayed from", replayText(a.replay)],
  ];
  for (const [term, value] of optional) {
    if (value !== undefined && value !== null && value !== "") rows.push([term, value]);
  }
  const labels = a.labels && typeof a.labels === "object" ? Object.entries(a.labels) : [];
  for (const [key, value] of labels) rows.push([`label ${key}`, value]);
  rows.push(["id", a.id]);
  return rows;
}

export function describe(ele) {
  const a = ele.data("attrs") || {};
  if (ele.isEdge()) {
    return [
      ["from", ele.source().data("label")],
      ["to", ele.target().data("label")],
      ...edgeRows(a),
    ];
  }
  return identityRows(a);
}

export class Tooltip {
  constructor(root) {
    this.root = root;
  }

  show(ele, x, y) {
    const rows = ele.isEdge() ? edgeRows(ele.data("attrs") || {}).slice(0, 8) : describe(ele).slice(0, 4);
    const title = ele.isEdge()
      ? `${ele.source().data("label")} → ${ele.target().data("label")}`
      : ele.data("label");
    this.root.replaceChildren(
      text("strong", title),
      ...rows.map(([term, value]) => text("div", `${term}: ${value}`)),
    );
    const box = this.root.parentElement.getBoundingClientRect();
    this.root.style.left = `${Math.min(x + 14, box.width - 340)}px`;
    this.root.style.top = `${y + 14}px`;
    this.root.hidden = false;
  }

  hide() {
    this.root.hidden = true;
  }
}

// The search box's result list: names as text, a click focuses the node.
export class SearchResults {
  constructor(root, onPick) {
    this.root = root;
    this.onPick = onPick;
  }

  show(matches) {
    const items = matches.slice(0, 20).map((m) => {
      const li = el("li", "result", []);
      const button = text("button", m.name);
      button.type = "button";
      button.dataset.id = m.id;
      button.append(text("span", m.kind, "result-kind"));
      button.addEventListener("click", () => this.onPick(m.id));
      li.append(button);
      return li;
    });
    if (matches.length > 20) items.push(text("li", `… ${matches.length - 20} more`, "result-more"));
    if (!matches.length) items.push(text("li", "no match at this level", "result-more"));
    this.root.replaceChildren(...items);
    this.root.hidden = false;
  }

  hide() {
    this.root.hidden = true;
  }
}

// ---------------------------------------------------------------- sparklines

// Series of the node API, how to name and print them; unknown ones still show.
const SERIES = [
  ["cpu_cores", "CPU", (v) => `${shortNumber(v)} cores`, "#2563eb"],
  ["memory_bytes", "memory", shortBytes, "#7c3aed"],
  ["net_rx_bytes_per_s", "network in", bytesPerSecond, "#0891b2"],
  ["net_tx_bytes_per_s", "network out", bytesPerSecond, "#0e7490"],
  ["connections_per_s_in", "connections in", perSecond, "#2f9e5b"],
  ["connections_per_s_out", "connections out", perSecond, "#15803d"],
  ["failed_per_s_in", "failed in", perSecond, "#d64545"],
  ["failed_per_s_out", "failed out", perSecond, "#b91c1c"],
  // Both directions of the connections it serves / makes (the "bytes in"
  // figure above is different: only what arrives).
  ["bytes_per_s_in", "bytes, serving", bytesPerSecond, "#0891b2"],
  ["bytes_per_s_out", "bytes, as client", bytesPerSecond, "#0e7490"],
];

// ``markAt`` (unix seconds, optional): a past view's time, drawn as a line.
export function drawSparkline(canvas, ts, values, colour, markAt = null) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 150;
  const height = canvas.clientHeight || 28;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const points = [];
  for (let i = 0; i < values.length; i += 1) {
    const v = values[i];
    const t = ts[i];
    if (v !== null && v !== undefined && Number.isFinite(Number(v)) && Number.isFinite(Number(t))) {
      points.push([Number(t), Number(v)]);
    } else {
      points.push(null); // a gap: no sample then
    }
  }
  const real = points.filter(Boolean);
  if (!real.length) return false;
  const mark = markAt === null || !Number.isFinite(Number(markAt)) ? null : Number(markAt);
  const t0 = Math.min(...real.map((p) => p[0]), mark ?? Infinity);
  const t1 = Math.max(...real.map((p) => p[0]), mark ?? -Infinity);
  const vmax = Math.max(...real.map((p) => p[1]), 0);
  const vmin = Math.min(...real.map((p) => p[1]), 0);
  const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (width - 2) + 1 : width / 2);
  const y = (v) => (vmax > vmin ? height - 2 - ((v - vmin) / (vmax - vmin)) * (height - 4) : height - 2);
  ctx.strokeStyle = colour;
  ctx.fillStyle = `${colour}22`;
  ctx.lineWidth = 1.5;
  let run = [];
  const flush = () => {
    if (!run.length) return;
    ctx.beginPath();
    run.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    if (run.length === 1) ctx.arc(x(run[0][0]), y(run[0][1]), 1.5, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.lineTo(x(run[run.length - 1][0]), height);
    ctx.lineTo(x(run[0][0]), height);
    ctx.closePath();
    ctx.fill();
    run = [];
  };
  for (const p of points) {
    if (p) run.push(p);
    else flush();
  }
  flush();
  if (mark !== null) {
    ctx.strokeStyle = "#0f172a";
    ctx.lineWidth = 1;
    ctx.setLineDash([2, 2]);
    ctx.beginPath();
    ctx.moveTo(x(mark), 0);
    ctx.lineTo(x(mark), height);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  return true;
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) {
    const v = values[i];
    if (v !== null && v !== undefined && Number.isFinite(Number(v))) return Number(v);
  }
  return null;
}

// ---------------------------------------------------------------- details panel

const REFRESH_MS = 2000;
const WINDOW_S = 900;

export class Details {
  // ``context``: { element(id), nameOf(id), edgesOf(id) -> {inbound, outbound},
  // past() -> whether the map shows the past, at() -> its unix time or null }
  constructor(root, context, onClose) {
    this.root = root;
    this.context = context;
    this.title = root.querySelector(".details-title");
    this.sub = root.querySelector(".details-sub");
    this.body = root.querySelector(".details-body");
    this.current = null;
    this.api = null; // the node API's last answer for ``current``
    this.apiState = "loading";
    this.timer = null;
    root.querySelector(".details-close").addEventListener("click", onClose);
  }

  show(ele) {
    const id = ele.id();
    if (id !== this.current) {
      this.current = id;
      this.api = null;
      this.apiState = ele.isEdge() ? "none" : "loading";
      this.body.scrollTop = 0;
      window.clearInterval(this.timer);
      if (ele.isNode()) {
        this.fetch();
        this.timer = window.setInterval(() => this.fetch(), REFRESH_MS);
      }
    }
    this.render();
    this.root.hidden = false;
  }

  hide() {
    window.clearInterval(this.timer);
    this.timer = null;
    this.current = null;
    this.api = null;
    this.root.hidden = true;
  }

  async fetch() {
    const id = this.current;
    if (id === null) return;
    let answer = null;
    let state;
    const at = this.context.at();
    try {
      // A past view's panel: the node as it was then, series up to then.
      const when = at === null ? "" : `&at=${encodeURIComponent(String(at))}`;
      const url = `/api/node/?id=${encodeURIComponent(id)}&window=${WINDOW_S}${when}`;
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        answer = await response.json();
        state = "ok";
      } else {
        state = response.status === 404 ? "missing" : `error ${response.status}`;
      }
    } catch {
      state = "unreachable";
    }
    // Another node was opened, or another time chosen, meanwhile.
    if (id !== this.current || at !== this.context.at()) return;
    this.apiState = state;
    if (answer && typeof answer === "object") this.api = answer;
    this.render();
  }

  // Re-render from the map's element and the API's last answer.
  render() {
    if (this.current === null) return;
    const ele = this.context.element(this.current);
    if (!ele || ele.empty()) {
      this.renderGone();
      return;
    }
    this.root.dataset.id = this.current;
    this.root.dataset.api = this.apiState;
    if (ele.isEdge()) {
      this.title.textContent = `${ele.source().data("label")} → ${ele.target().data("label")}`;
      this.sub.replaceChildren(text("span", "connection", "badge"));
      this.body.replaceChildren(this.section("Traffic", this.dl(edgeRows(ele.data("attrs") || {}))));
      return;
    }
    const graphAttrs = ele.data("attrs") || {};
    // The map's own attributes first; the API's node is of the same time.
    const api = this.apiOfView();
    const apiNode = api && api.node && typeof api.node === "object" ? api.node : {};
    const a = { ...apiNode, ...graphAttrs, reasons: graphAttrs.reasons ?? apiNode.reasons };
    this.title.textContent = ele.data("label");
    this.sub.replaceChildren(
      text("span", a.type ?? "node", "badge"),
      text("span", a.status ?? "unknown", `badge status-${statusClass(a.status)}`),
    );
    const sections = [];
    const because = this.becauseOf(a);
    if (because) sections.push(this.section("Likely cause", because, "because"));
    const why = whyRed(a);
    if (why.length) {
      const list = el("ul", "reasons", why.map((r) => text("li", r)));
      sections.push(this.section("Why is this red", list, "why"));
    }
    const notes = Array.isArray(a.notes) ? a.notes.filter((n) => n != null).map(String) : [];
    if (notes.length) {
      sections.push(this.section("Notes", el("ul", "notes", notes.map((n) => text("li", n))), "notes"));
    }
    const start = this.whereToStart(ele, a);
    if (start) sections.push(this.section("Where to start", start, "where-to-start"));
    const at = this.context.at();
    // A past view's figures are of its time (its edges' rates then).
    sections.push(this.section(at === null ? "Now" : "Then", this.now(ele)));
    const seriesTitle =
      at === null ? "Last 15 minutes" : `15 minutes up to ${new Date(at * 1000).toLocaleTimeString()}`;
    sections.push(this.section(seriesTitle, this.sparklines(), "series"));
    const { inbound, outbound } = this.connections(ele);
    sections.push(this.section(`Inbound (${inbound.length})`, this.peers(inbound, "source"), "inbound"));
    sections.push(this.section(`Outbound (${outbound.length})`, this.peers(outbound, "target"), "outbound"));
    sections.push(this.section("Identity", this.dl(identityRows(a)), "identity"));
    sections.push(this.section("Processes", this.processes()));
    sections.push(this.section("Recent events", this.events()));
    this.body.replaceChildren(...sections);
  }

  // The node API's last answer if it is of the time the map shows, else null.
  apiOfView() {
    if (!this.api || typeof this.api !== "object") return null;
    const at = this.api.at ?? null;
    return at === this.context.at() ? this.api : null;
  }

  // A link that opens another node's panel, as a click on it would.
  nodeLink(id, label) {
    const link = text("a", label, "node-link");
    link.href = "#";
    link.dataset.target = String(id);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const target = this.context.element(String(id));
      if (target && target.nonempty()) target.emit("tap");
    });
    return link;
  }

  // "because of db: exited with code 137", for a node a likely cause explains.
  becauseOf(a) {
    const root = a.because_of;
    if (!root || typeof root !== "object" || root.target == null) return null;
    const name = root.name ?? this.context.nameOf(root.target);
    const line = el("p", "because-of", [text("span", "because of "), this.nodeLink(root.target, name)]);
    if (root.reason) line.append(text("span", `: ${root.reason}`));
    return line;
  }

  // The analyzer's ranked likely causes on this map, for a node in trouble.
  whereToStart(ele, a) {
    const troubled = a.status === "critical" || a.status === "warning" || a.because_of || a.cause_rank;
    if (!troubled) return null;
    const ranked = ele
      .cy()
      .nodes()
      .filter((n) => Number((n.data("attrs") || {}).cause_rank) > 0)
      .sort((x, y) => x.data("attrs").cause_rank - y.data("attrs").cause_rank)
      .slice(0, 5);
    if (!ranked.length) return null;
    const list = el("ol", "causes");
    ranked.forEach((n) => {
      const attrs = n.data("attrs") || {};
      const reasons = Array.isArray(attrs.reasons) ? attrs.reasons : [];
      const item = el("li", n.id() === this.current ? "cause current" : "cause", [
        this.nodeLink(n.id(), n.data("label")),
      ]);
      if (reasons.length) item.append(text("span", `: ${reasons[0]}`, "cause-reason"));
      list.append(item);
    });
    return list;
  }

  renderGone() {
    this.root.dataset.id = this.current;
    this.sub.replaceChildren(text("span", "not on the map at this level", "badge"));
    this.body.replaceChildren(text("p", "This node is not shown right now.", "nodata"));
  }

  section(title, content, className = "") {
    return el("section", `details-section ${className}`.trim(), [text("h3", title), content]);
  }

  dl(rows) {
    const dl = el("dl", "details-dl");
    for (const [term, value] of rows) dl.append(text("dt", term), text("dd", value));
    return dl;
  }

  noData(message = "no data") {
    return text("p", message, "nodata");
  }

  // Live figures from the graph's edges: there even without the node API.
  now(ele) {
    const { inbound, outbound } = this.connections(ele);
    const sum = (edges, key) => edges.reduce((s, e) => s + num(e[key]), 0);
    const connIn = inbound.reduce((s, e) => s + connectionRate(e), 0);
    // Edges are seen from the client (bytes_sent: client -> server), so this
    // node receives what its clients send and what its servers send back.
    const bytesIn = sum(inbound, "bytes_sent_per_s") + sum(outbound, "bytes_received_per_s");
    const figures = el("div", "figures", [
      this.figure("conn in", perSecond(connIn)),
      this.figure("conn out", perSecond(sum(outbound, "connections_per_s"))),
      this.figure("failed", perSecond(sum(inbound, "failed_per_s") + sum(outbound, "failed_per_s"))),
      this.figure("bytes in", bytesPerSecond(bytesIn)),
    ]);
    const metrics = (ele.data("attrs") || {}).metrics;
    if (metrics && typeof metrics === "object") {
      if (metrics.cpu_cores !== undefined) figures.append(this.figure("CPU", `${shortNumber(metrics.cpu_cores)} cores`));
      // The working set, as in the memory series and the memory rules
      // (memory_bytes is only the series' name, never a metric).
      const memory = metrics.memory_working_set_bytes ?? metrics.memory_usage_bytes;
      if (memory !== undefined) figures.append(this.figure("memory", shortBytes(memory)));
      // A host's own: used of total, and its load against its CPUs.
      const total = num(metrics.memory_total_bytes);
      if (memory === undefined && total && metrics.memory_available_bytes !== undefined) {
        const used = total - num(metrics.memory_available_bytes);
        figures.append(this.figure("memory", `${shortBytes(used)} of ${shortBytes(total)}`));
      }
      if (metrics.load1 !== undefined && metrics.cpus) {
        figures.append(this.figure("load", `${shortNumber(metrics.load1)} on ${metrics.cpus} CPUs`));
      }
    }
    return figures;
  }

  figure(label, value) {
    return el("div", "figure", [text("span", value, "figure-value"), text("span", label, "figure-label")]);
  }

  sparklines() {
    const api = this.apiOfView();
    const series = api && api.series && typeof api.series === "object" ? api.series : null;
    if (!series || !Array.isArray(series.ts) || !series.ts.length) {
      return this.noData(this.apiState === "loading" ? "loading…" : "no data");
    }
    const known = new Map(SERIES.map((s) => [s[0], s]));
    const names = [
      ...SERIES.map((s) => s[0]).filter((n) => Array.isArray(series[n])),
      ...Object.keys(series).filter((n) => n !== "ts" && !known.has(n) && Array.isArray(series[n])).sort(),
    ];
    const grid = el("div", "sparklines");
    const markAt = this.context.at();
    // The time a past view shows, marked on every series (and readable here).
    if (markAt !== null) grid.dataset.markedAt = String(markAt);
    const draws = [];
    for (const name of names) {
      const [, label, format, colour] = known.get(name) || [name, name, shortNumber, "#475569"];
      const values = series[name];
      const latest = lastValue(values);
      const canvas = document.createElement("canvas");
      canvas.className = "spark";
      canvas.setAttribute("aria-label", `${label} over the last 15 minutes`);
      grid.append(
        el("div", "spark-row", [
          text("span", label, "spark-label"),
          canvas,
          text("span", latest === null ? "no data" : format(latest), "spark-value"),
        ]),
      );
      draws.push(() => drawSparkline(canvas, series.ts, values, colour, markAt));
    }
    if (!names.length) return this.noData();
    // Drawn once the canvases are laid out (they size from CSS).
    window.requestAnimationFrame(() => draws.forEach((d) => d()));
    return grid;
  }

  // Inbound and outbound edges: the API's when it answered for the time the
  // map shows, else the map's.
  connections(ele) {
    const api = this.apiOfView() || {};
    if (Array.isArray(api.inbound) || Array.isArray(api.outbound)) {
      return {
        inbound: Array.isArray(api.inbound) ? api.inbound : [],
        outbound: Array.isArray(api.outbound) ? api.outbound : [],
      };
    }
    return this.context.edgesOf(ele);
  }

  peers(edges, end) {
    if (!edges.length) return this.noData("none");
    const table = el("table", "peers");
    table.append(
      el("thead", "", [el("tr", "", ["peer", "conn/s", "failed/s", "bytes/s", "errors"].map((h) => text("th", h)))]),
    );
    const body = el("tbody");
    const sorted = [...edges].sort(
      (a, b) => connectionRate(b) - connectionRate(a) || num(b.connections) - num(a.connections),
    );
    for (const e of sorted.slice(0, 50)) {
      const bytes = num(e.bytes_sent_per_s) + num(e.bytes_received_per_s);
      const errors = [
        num(e.failed_refused) ? `${shortNumber(e.failed_refused)} refused` : "",
        num(e.failed_timeout) ? `${shortNumber(e.failed_timeout)} timeout` : "",
        num(e.failed_unreachable) ? `${shortNumber(e.failed_unreachable)} unreachable` : "",
        num(e.resets) ? `${shortNumber(e.resets)} resets` : "",
      ].filter(Boolean).join(", ");
      const row = el("tr", num(e.failed_per_s) || num(e.failed) ? "has-errors" : "", [
        text("td", this.context.nameOf(e[end])),
        text("td", shortNumber(connectionRate(e))),
        text("td", shortNumber(e.failed_per_s)),
        text("td", shortBytes(bytes)),
        text("td", errors || (num(e.failed) ? `${shortNumber(e.failed)} failed` : "–")),
      ]);
      body.append(row);
    }
    table.append(body);
    return table;
  }

  processes() {
    const api = this.apiOfView();
    const list = api && Array.isArray(api.processes) ? api.processes : null;
    if (!list || !list.length) return this.noData();
    const table = el("table", "procs");
    table.append(el("thead", "", [el("tr", "", ["pid", "command", "user", "listens"].map((h) => text("th", h)))]));
    const body = el("tbody");
    for (const p of list.slice(0, 50)) {
      if (!p || typeof p !== "object") continue;
      body.append(
        el("tr", "", [
          text("td", p.pid ?? ""),
          text("td", p.command ?? ""),
          text("td", p.user ?? ""),
          text("td", p.port ? `${p.port}/${p.proto ?? "tcp"}` : ""),
        ]),
      );
    }
    table.append(body);
    return table;
  }

  events() {
    const api = this.apiOfView();
    const list = api && Array.isArray(api.events) ? api.events : null;
    if (!list || !list.length) return this.noData();
    const ul = el("ul", "events");
    for (const e of [...list].reverse().slice(0, 30)) {
      if (!e || typeof e !== "object") continue;
      const when = Number.isFinite(Number(e.ts)) ? new Date(Number(e.ts) * 1000).toLocaleTimeString() : "";
      ul.append(
        el("li", `event kind-${statusClass(e.kind)}`, [
          text("span", when, "event-time"),
          text("span", e.kind ?? "", "event-kind"),
          text("span", e.message ?? "", "event-message"),
        ]),
      );
    }
    return ul;
  }
}

// A CSS class fragment from a value anyone could choose: letters only.
function statusClass(value) {
  return String(value ?? "").toLowerCase().replace(/[^a-z]/g, "").slice(0, 20) || "unknown";
}

// Why a node is red or amber: the anomaly detector's reasons when there are
// some, else what the graph itself says.
export function whyRed(a) {
  const reasons = Array.isArray(a.reasons) ? a.reasons.filter((r) => r != null).map(String) : [];
  if (reasons.length) return reasons;
  if (a.status !== "critical" && a.status !== "warning") return [];
  if (a.type === "container" && (a.state === "exited" || a.state === "dead")) {
    return [`the container ${a.state} with exit code ${a.exit_code ?? "?"}`];
  }
  if (a.state && a.state !== "running") return [`the container is ${a.state}`];
  if (a.type === "host") return ["one of its containers is not well (its worst status shows)"];
  return [`status is ${a.status}`];
}
