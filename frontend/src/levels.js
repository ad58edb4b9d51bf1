// Level switching: hosts -> the containers of one host -> the services of one
// container, by zooming past a threshold, double-clicking, or the level links.
//
// The page (map.js) holds the shared state (view, map, socket, panels); this
// module decides when to switch and what the next level focuses on.

import { hostOf, nodeKind } from "./graph.js";
import { LEVELS } from "./viewstate.js";

// Semantic zoom: a user's zoom past these values switches level. The gap
// between a level's thresholds and where a switch lands is the hysteresis
// that keeps one wheel notch from bouncing between levels.
const FINER_AT = { host: 2.2, container: 2.6 };
const COARSER_AT = { container: 0.45, service: 0.6 };
const LANDING_MARGIN = 1.5;
// The rest of a wheel flick that switched level must not carry on.
const QUIET_AFTER_SWITCH_MS = 500;
// Cytoscape 3.34 zooms a mouse wheel notch by under 3 %; levels are meant to
// be a few notches apart.
export const WHEEL_SENSITIVITY = 2.5;

// The zooms a view at ``level`` may land at without being one notch from a
// switch: ``low`` above the coarser threshold, ``high`` below the finer one.
export function landingZooms(level) {
  return {
    low: (COARSER_AT[level] || 0) * LANDING_MARGIN,
    high: (FINER_AT[level] || Infinity) / LANDING_MARGIN,
  };
}

// The level one ``step`` finer (1) or coarser (-1) than ``level``.
function levelBeside(level, step) {
  return LEVELS[LEVELS.indexOf(level) + step] || null;
}

// The focus one level up from ``focus`` at ``level``: the host of the
// container we looked at, else everything ("").
function focusOneUp(focus, level) {
  if (!focus) return "";
  if (level === "service") {
    return nodeKind(focus) === "container" ? hostOf(focus) || "" : "";
  }
  return "";
}

// The shown node of ``kind`` nearest to ``pointer`` (rendered pixels; the
// middle of the map if null).
function nodeNear(cy, pointer, kind) {
  const p = pointer || { x: cy.width() / 2, y: cy.height() / 2 };
  let best = null;
  let bestDistance = Infinity;
  cy.nodes(`[kind = "${kind}"]`).forEach((n) => {
    if (n.hasClass("hidden")) return;
    const box = n.renderedBoundingBox({ includeLabels: false });
    // Inside a node's box counts as on it (a host frame is large).
    const dx = Math.max(box.x1 - p.x, 0, p.x - box.x2);
    const dy = Math.max(box.y1 - p.y, 0, p.y - box.y2);
    const d = Math.hypot(dx, dy) + (n.isParent() ? 1 : 0);
    if (d < bestDistance) {
      best = n;
      bestDistance = d;
    }
  });
  return best;
}

export class LevelSwitcher {
  constructor(page) {
    this.page = page;
    this.switching = false; // until the new level's first graph is shown
    this.quietUntil = 0;
    this.pointer = null; // where the last zoom centred, in rendered pixels
  }

  // Show ``level``, focused on node ``focus`` (an id, or "" for everything).
  switchLevel(level, focus = "", { fit = true } = {}) {
    if (!LEVELS.includes(level)) return;
    const page = this.page;
    this.switching = true;
    this.quietUntil = performance.now() + QUIET_AFTER_SWITCH_MS;
    page.tooltip.hide();
    page.closeDetails();
    page.map.setLevel(level);
    Object.assign(page.view, { level, focus, zoom: null, x: null, y: null });
    page.pendingView = { restore: false, fit, select: "" };
    page.status.setLevel(level);
    page.status.setCounts(0, 0, 0);
    page.controls.showLevelNav();
    page.controls.showCrumbs();
    // The socket follows the new level even while paused (it does not connect
    // then), so going live later resumes this level, not the one left.
    page.socket.setLevel(level);
    if (page.view.at !== null) page.loadPast(page.view.at);
    page.syncUrl();
  }

  // After a wheel or pinch: past a threshold, change level around the pointer.
  checkSemanticZoom(direction) {
    if (this.switching || performance.now() < this.quietUntil) return;
    const { cy, map, view } = this.page;
    const level = map.level;
    const zoom = cy.zoom();
    if (direction > 0 && FINER_AT[level] && zoom >= FINER_AT[level]) {
      const kind = level === "host" ? "host" : "container";
      const target = nodeNear(cy, this.pointer, kind);
      this.switchLevel(levelBeside(level, 1), target ? target.id() : "");
    } else if (direction < 0 && COARSER_AT[level] && zoom <= COARSER_AT[level] &&
        !map.fleet) {
      // (A fleet map shows its hosts itself when zoomed out: no level switch.)
      this.switchLevel(levelBeside(level, -1), focusOneUp(view.focus, level));
    }
  }

  // Double-click: a host opens into its containers, a container its services.
  openNode(node) {
    const page = this.page;
    const kind = node.data("kind");
    const level = page.map.level;
    if (kind === "host" && level === "host") this.switchLevel("container", node.id());
    else if (kind === "host" && level === "container") {
      page.view.focus = node.id();
      page.cy.nodes().removeClass("focus");
      node.addClass("focus");
      page.map.fit(node.union(node.descendants()));
      page.controls.showCrumbs();
    } else if (kind === "container" && level === "container") this.switchLevel("service", node.id());
    else if (kind === "service") page.select(node.id(), false);
  }
}
