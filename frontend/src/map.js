// Portolan's live map: the page's entry point (bundled to static/portolan/map.js).
//
// The page holds the state its parts share (the view, the live map, the
// socket, the panels) and moves data between them: snapshots and diffs from
// the socket or the history API into the live map, then the panels, filters
// and URL up to date. Zooming past a threshold (or double-clicking) switches
// level: hosts -> the containers of the host under the pointer -> the services
// of a container. The URL always holds the view (viewstate.js).
//
//   livemap.js   the Cytoscape instance and its elements: diffs, filters, search
//   layout.js    where new nodes go, fitting the view
//   levels.js    semantic zoom and level switching
//   controls.js  gestures, toolbar, level links and crumbs, time slider
//   socket.js    the WebSocket: reconnects, joins a snapshot's parts
//   handle.js    window.portolanMap, for tests and the benchmark

import "./map.css";
import { nameFromId } from "./graph.js";
import { Controls } from "./controls.js";
import { exposeHandle } from "./handle.js";
import { LevelSwitcher, landingZooms } from "./levels.js";
import { LiveMap } from "./livemap.js";
import { TopologySocket } from "./socket.js";
import { Details, SearchResults, StatusBar, Tooltip, watchRuleFailures } from "./ui.js";
import { formatView, parseView } from "./viewstate.js";

const $ = (id) => document.getElementById(id);

// What the status bar says while the socket is not delivering (socket.js
// onState); "closed" adds the retry delay.
const SOCKET_STATES = {
  connecting: ["connecting", "connecting…"],
  open: ["open", "connected, waiting for data"],
  paused: ["past", "viewing the past: live updates paused"],
};

class MapPage {
  constructor(config) {
    this.config = config;
    const params = new URLSearchParams(window.location.search);
    this.renderer = ["webgl", "fast", "canvas"].includes(params.get("renderer"))
      ? params.get("renderer")
      : "";
    this.view = parseView(window.location.search, config.level);
    this.container = $("map");
    // ?lod=off draws a fleet whole (bench/map_fleet.py compares the two).
    this.map = new LiveMap(this.container, this.view.level, this.renderer,
      params.get("lod") !== "off");
    this.cy = this.map.cy;
    this.map.onRedraw = () => this.refreshDrawn();
    this.levels = new LevelSwitcher(this);
    this.controls = new Controls(this);
    this.status = new StatusBar($("statusbar"));
    this.tooltip = new Tooltip($("tooltip"));
    this.results = new SearchResults($("search-results"), (id) => {
      this.results.hide();
      this.select(id, true);
    });
    this.details = new Details(
      $("details"),
      {
        element: (id) => this.cy.getElementById(id),
        nameOf: (id) => this.nameOf(id),
        edgesOf: (ele) => ({
          inbound: ele.incomers("edge").map((e) => e.data("attrs")),
          outbound: ele.outgoers("edge").map((e) => e.data("attrs")),
        }),
        past: () => this.view.at !== null,
        at: () => this.view.at,
      },
      () => this.closeDetails(),
    );
    // The first snapshot at a level restores the URL's viewport or focus.
    this.pendingView = { restore: this.view.zoom !== null, select: this.view.sel };
    this.firstDrawMs = null;
    this.wholeDrawMs = null;
    // Milestones of the first map (ms since navigation), for bench/map_render.py
    // (``nodesDrawn``: a fleet's tiles drawn before its links came).
    this.marks = {
      opened: null, firstPart: null, nodesDrawn: null, graphIn: null, applied: null, ready: null,
    };
    this.urlTimer = null;
    this.socket = new TopologySocket(config.socketPath, this.view.level, {
      onState: (state, delay) => this.showSocketState(state, delay),
      onMessage: (message) => this.applyMessage(message),
    });
  }

  start() {
    this.controls.bind();
    this.status.setLevel(this.view.level);
    watchRuleFailures(this.status);
    this.controls.showLevelNav();
    this.controls.sync();
    if (this.view.at !== null) this.loadPast(this.view.at);
    else this.socket.connect();
    exposeHandle(this);
  }

  // -------------------------------------------------------------- data in

  showSocketState(state, delay) {
    const seconds = Math.round((delay || 0) / 100) / 10;
    this.status.setState(
      ...(SOCKET_STATES[state] || ["closed", `disconnected, retrying in ${seconds} s`]),
    );
  }

  // A message from the socket (a snapshot arrives whole: socket.js).
  applyMessage(message) {
    if (message.type === "snapshot") {
      this.markSnapshotCame(message);
      if (message.level && message.level !== this.map.level) return;
      this.applyGraph(message.graph, true);
      this.status.setState("live", "live");
    } else if (message.type === "snapshot-nodes") {
      if (message.level && message.level !== this.map.level) return;
      this.applyNodes(message);
    } else if (message.type === "diff") {
      // The first nodes after an empty snapshot: the view lands now.
      this.updateViewport(this.map.applyDiff(message));
      this.status.setState("live", "live");
      this.refreshFromGraph();
    } else if (message.type === "error") {
      this.status.setState("error", `server: ${message.message}`);
    }
  }

  // A snapshot's nodes before its links (socket.js): a fleet's tiles are
  // drawn early. The whole snapshot follows (applyGraph).
  applyNodes(message) {
    const laidOut = this.map.drawNodes(message.graph);
    if (!this.map.awaitingLinks) return; // not a fleet's first map
    this.markSnapshotCame(message);
    this.marks.nodesDrawn = performance.now();
    this.updateViewport(laidOut);
    this.refreshFromGraph();
    this.status.setState("loading", "loading connections…");
    this.markDrawn();
  }

  applyGraph(graph, snapshot) {
    if (snapshot && !this.marks.graphIn) this.marks.graphIn = performance.now();
    const laidOut = this.map.applySnapshot(graph);
    if (snapshot && !this.marks.applied) this.marks.applied = performance.now();
    this.updateViewport(laidOut);
    this.refreshFromGraph();
    if (snapshot && !this.marks.ready) this.marks.ready = performance.now();
    if (snapshot) this.markDrawn();
    this.levels.switching = false;
  }

  // When the first snapshot's first part came, and its socket opened.
  markSnapshotCame(message) {
    if (!this.marks.firstPart) this.marks.firstPart = message.firstPartAt;
    if (!this.marks.opened) this.marks.opened = this.socket.openedAt;
  }

  // Time to the first drawn map and to the whole one (a fleet's tiles can
  // come before its links: applyNodes), for bench/map_render.py and
  // bench/map_fleet.py. Cytoscape draws on its next animation frame; the one
  // after it is shown.
  markDrawn() {
    if (this.cy.nodes().empty()) return;
    const first = this.firstDrawMs === null;
    const whole = this.wholeDrawMs === null && !this.map.awaitingLinks;
    if (!first && !whole) return;
    window.requestAnimationFrame(() =>
      window.requestAnimationFrame(() => {
        const now = performance.now();
        if (first && this.firstDrawMs === null) this.firstDrawMs = now;
        if (whole && this.wholeDrawMs === null) this.wholeDrawMs = now;
      }),
    );
  }

  // The URL's view (focus, selection, zoom) is restored with the first nodes:
  // an empty map (no collector reported yet) keeps it for them. Otherwise a
  // new layout is fitted.
  updateViewport(laidOut) {
    const pending = this.cy.nodes().nonempty() ? this.pendingView : null;
    if (pending) {
      this.pendingView = null;
      this.restoreView(pending, laidOut);
    } else if (laidOut) {
      this.map.fit();
    }
  }

  // Where the view goes after a level's first snapshot: the URL's viewport,
  // else around the focus, else the whole map.
  restoreView(pending, laidOut) {
    const cy = this.cy;
    const focus = this.view.focus ? this.map.reveal(this.view.focus) : cy.collection();
    cy.nodes().removeClass("focus");
    if (focus.nonempty()) focus.addClass("focus");
    if (pending.restore && this.view.zoom !== null) {
      // Read before setting: each viewport change rewrites view.x/y from the
      // current pan (controls.js), so zoom and pan are set in one go.
      const { x, y } = this.view;
      const zoom = Math.max(cy.minZoom(), Math.min(cy.maxZoom(), this.view.zoom));
      if (x !== null && y !== null) {
        cy.viewport({ zoom, pan: { x: cy.width() / 2 - x * zoom, y: cy.height() / 2 - y * zoom } });
      } else {
        cy.zoom(zoom);
      }
    } else if (focus.nonempty()) {
      let eles = focus.union(focus.descendants());
      // A container is small: show who it talks to as well.
      if (focus.data("kind") !== "host") {
        eles = eles.union(eles.neighborhood("node").filter((n) => n.isChildless()));
      }
      this.map.fit(eles);
      const { low } = landingZooms(this.map.level);
      if (cy.zoom() < low) {
        cy.zoom(low);
        cy.center(focus);
      }
    } else if (laidOut || pending.fit) {
      this.map.fit();
    }
    if (pending.select) {
      // A fleet map draws a selection elsewhere by bringing it into view.
      const ele = cy.getElementById(pending.select);
      if (ele.nonempty() || this.map.fleet) this.select(pending.select, false);
    }
  }

  // Bring what depends on the shown graph up to date: renderer flags,
  // filters, counts, search, filter menus, the open panel, the crumbs.
  refreshFromGraph() {
    this.map.matchRendererToSize();
    const hidden = this.map.applyFilters(this.view);
    const { nodes, edges } = this.map.counts();
    this.status.setCounts(nodes, edges, hidden);
    this.status.touch();
    if (this.view.q) this.controls.runSearch(false);
    this.controls.fillFilterChoices();
    if (this.details.current !== null) this.details.render();
    this.controls.showCrumbs();
  }

  // A fleet map drew another part of itself (livemap.js redraw): the
  // filters and search highlights apply to what is drawn now.
  refreshDrawn() {
    const v = this.view;
    if (v.ns || v.project || v.image || v.label || v.hide.length) this.map.applyFilters(v);
    if (v.q) this.map.search(v.q.trim());
  }

  // -------------------------------------------------------------- time

  async loadPast(at) {
    this.socket.pause();
    this.view.at = at;
    const level = this.map.level;
    this.controls.sync();
    this.syncUrl();
    try {
      const url = `/api/graph/?level=${encodeURIComponent(level)}&at=${encodeURIComponent(String(at))}`;
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) {
        this.socket.toLogin();
        return;
      }
      if (!response.ok) {
        this.status.setState("error", `history unavailable (HTTP ${response.status})`);
        return;
      }
      const graph = await response.json();
      if (this.view.at !== at || this.map.level !== level) return; // moved on meanwhile
      this.applyGraph(graph, true);
      this.status.setState("past", `as it was at ${new Date(at * 1000).toLocaleString()} · live updates paused`);
    } catch {
      this.status.setState("error", "history unavailable: the server did not answer");
    }
  }

  goLive() {
    this.view.at = null;
    this.controls.sync();
    this.syncUrl();
    // The socket's snapshot is applied against what is shown: kept nodes stay.
    this.socket.resume();
  }

  // -------------------------------------------------------------- selection

  select(id, move) {
    // A fleet draws only what is in view: a search result elsewhere is
    // brought into view first.
    const ele = this.map.reveal(id);
    if (ele.empty()) return;
    this.cy.elements().unselect();
    ele.select();
    if (move) {
      this.cy.animate({ center: { eles: ele }, zoom: Math.max(this.cy.zoom(), 0.8) }, { duration: 250 });
    }
    this.details.show(ele);
    this.view.sel = id;
    this.syncUrl();
  }

  closeDetails() {
    this.cy.elements().unselect();
    this.details.hide();
    this.view.sel = "";
    this.syncUrl();
  }

  nameOf(id) {
    const ele = this.cy.getElementById(id);
    return ele.nonempty() ? ele.data("label") : nameFromId(id);
  }

  // -------------------------------------------------------------- URL

  syncUrl() {
    window.clearTimeout(this.urlTimer);
    this.urlTimer = window.setTimeout(() => {
      const url = formatView(this.view, { renderer: this.renderer });
      if (url !== window.location.search) window.history.replaceState(null, "", url);
    }, 200);
  }
}

function start() {
  const config = JSON.parse($("portolan-config").textContent);
  new MapPage(config).start();
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
