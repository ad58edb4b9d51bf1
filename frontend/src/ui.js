// The DOM around the canvas: status bar, tooltip, details panel.
//
// Every value shown here comes from the graph, i.e. from container names and
// labels anyone can choose: it is written with textContent only, never as HTML.

function text(tag, value, className) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = value == null ? "" : String(value);
  return el;
}

export class StatusBar {
  constructor(root) {
    this.root = root;
    this.dot = root.querySelector(".conn .dot");
    this.connText = root.querySelector(".conn-text");
    this.counts = root.querySelector(".counts");
    this.updated = root.querySelector(".updated");
  }

  setState(state, message) {
    this.root.dataset.state = state;
    this.connText.textContent = message;
  }

  setCounts(nodes, edges) {
    this.root.dataset.nodes = String(nodes);
    this.root.dataset.edges = String(edges);
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    this.counts.textContent = `${plural(nodes, "node")} · ${plural(edges, "edge")}`;
  }

  touch() {
    this.updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }
}

// The lines shown for a node or edge: [term, value] pairs, plain text.
export function describe(ele) {
  const a = ele.data("attrs") || {};
  if (ele.isEdge()) {
    const rows = [
      ["from", ele.source().data("label")],
      ["to", ele.target().data("label")],
      ["connections", a.connections ?? 0],
      ["failed", a.failed ?? 0],
      ["status", a.status ?? "ok"],
    ];
    if (a.accepts) rows.push(["accepted", a.accepts]);
    if (a.bytes_sent || a.bytes_received) {
      rows.push(["bytes sent / received", `${a.bytes_sent ?? 0} / ${a.bytes_received ?? 0}`]);
    }
    return rows;
  }
  const rows = [
    ["type", a.type],
    ["status", a.status],
  ];
  const optional = [
    ["state", a.state],
    ["image", a.image],
    ["host", a.host],
    ["IPs", Array.isArray(a.ips) ? a.ips.join(", ") : ""],
    ["ports", Array.isArray(a.ports) ? a.ports.join(", ") : ""],
    ["kernel", a.kernel],
    ["collector", a.mode ? `${a.mode}${a.mode_reason ? ` (${a.mode_reason})` : ""}` : ""],
  ];
  for (const [term, value] of optional) {
    if (value !== undefined && value !== null && value !== "") rows.push([term, value]);
  }
  const labels = a.labels && typeof a.labels === "object" ? Object.entries(a.labels) : [];
  for (const [key, value] of labels) rows.push([`label ${key}`, value]);
  rows.push(["id", a.id]);
  return rows;
}

export class Tooltip {
  constructor(root) {
    this.root = root;
  }

  show(ele, x, y) {
    const rows = describe(ele).slice(0, ele.isEdge() ? 5 : 3);
    const title = ele.isEdge()
      ? `${ele.source().data("label")} → ${ele.target().data("label")}`
      : ele.data("label");
    this.root.replaceChildren(
      text("strong", title),
      ...rows.map(([term, value]) => text("div", `${term}: ${value}`)),
    );
    this.root.style.left = `${x + 14}px`;
    this.root.style.top = `${y + 14}px`;
    this.root.hidden = false;
  }

  hide() {
    this.root.hidden = true;
  }
}

export class Details {
  constructor(root, onClose) {
    this.root = root;
    this.title = root.querySelector(".details-title");
    this.body = root.querySelector(".details-body");
    this.current = null;
    root.querySelector(".details-close").addEventListener("click", onClose);
  }

  show(ele) {
    this.current = ele.id();
    this.title.textContent = ele.isEdge()
      ? `${ele.source().data("label")} → ${ele.target().data("label")}`
      : ele.data("label");
    const items = [];
    for (const [term, value] of describe(ele)) {
      items.push(text("dt", term), text("dd", value));
    }
    this.body.replaceChildren(...items);
    this.root.hidden = false;
  }

  hide() {
    this.current = null;
    this.root.hidden = true;
  }
}
