// The view a URL holds: level, focus, viewport, filters, time, open panel.
//
// Pure functions between a URLSearchParams and a plain object, so a link shows
// a colleague the same map. Unknown or malformed values fall back to defaults:
// a URL is input like any other.

export const LEVELS = ["host", "container", "service"]; // coarse to fine
export const HIDE_OPTIONS = ["idle", "external"];

export function emptyView(level = "host") {
  return {
    level,
    focus: "",
    zoom: null, // null: fit
    x: null, // model coordinates of the viewport's centre
    y: null,
    q: "",
    label: "",
    ns: "",
    project: "",
    image: "",
    hide: [],
    at: null, // unix seconds; null: live
    sel: "",
  };
}

function finite(text) {
  if (text === null || text === "") return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

export function parseView(search, defaultLevel = "host") {
  const params = new URLSearchParams(search);
  const view = emptyView(defaultLevel);
  const level = params.get("level");
  if (LEVELS.includes(level)) view.level = level;
  for (const key of ["focus", "q", "label", "ns", "project", "image", "sel"]) {
    view[key] = (params.get(key) || "").slice(0, 500);
  }
  view.zoom = finite(params.get("zoom"));
  if (view.zoom !== null && view.zoom <= 0) view.zoom = null;
  view.x = finite(params.get("x"));
  view.y = finite(params.get("y"));
  view.at = finite(params.get("at"));
  view.hide = (params.get("hide") || "")
    .split(",")
    .filter((h) => HIDE_OPTIONS.includes(h));
  return view;
}

// Only what differs from the defaults, in a fixed order, so links stay short.
export function formatView(view, extra = {}) {
  const params = new URLSearchParams();
  params.set("level", view.level);
  for (const key of ["focus", "sel", "q", "label", "ns", "project", "image"]) {
    if (view[key]) params.set(key, view[key]);
  }
  if (view.hide.length) params.set("hide", view.hide.join(","));
  if (view.zoom !== null) params.set("zoom", view.zoom.toFixed(3));
  if (view.x !== null) params.set("x", view.x.toFixed(0));
  if (view.y !== null) params.set("y", view.y.toFixed(0));
  if (view.at !== null) params.set("at", String(Math.round(view.at)));
  for (const [key, value] of Object.entries(extra)) {
    if (value) params.set(key, value);
  }
  return `?${params.toString()}`;
}

// Whether a node passes the filters (search is not a filter: it highlights).
// ``data`` is a Cytoscape node's data (see graph.js nodeData).
export function passesFilters(data, view) {
  if (view.hide.includes("external") && data.kind === "external") return false;
  const attrs = data.attrs || {};
  const hasContainerFacts = data.kind === "container" || data.kind === "service";
  if (hasContainerFacts) {
    if (view.ns && data.namespace !== view.ns) return false;
    if (view.project && data.project !== view.project) return false;
    if (view.image && data.image !== view.image) return false;
  }
  if (view.label && (hasContainerFacts || data.kind === "host")) {
    if (!labelMatches(attrs.labels, view.label)) return false;
  }
  return true;
}

// ``key`` or ``key=value`` against a node's labels.
export function labelMatches(labels, filter) {
  if (!labels || typeof labels !== "object") return false;
  const eq = filter.indexOf("=");
  if (eq < 0) return Object.prototype.hasOwnProperty.call(labels, filter.trim());
  const key = filter.slice(0, eq).trim();
  const value = filter.slice(eq + 1).trim();
  return Object.prototype.hasOwnProperty.call(labels, key) && String(labels[key]) === value;
}

export function nameMatches(data, query) {
  if (!query) return false;
  return String(data.name).toLowerCase().includes(query.toLowerCase());
}
