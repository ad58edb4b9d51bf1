// window.portolanMap: a read-only handle on the page for the browser tests,
// bench/map_render.py and the console. The page itself never reads it.

export function exposeHandle(page) {
  const cy = page.cy;
  window.portolanMap = Object.freeze({
    get level() {
      return page.map.level;
    },
    // Milestones of the first map (ms since navigation).
    get marks() {
      return { ...page.marks };
    },
    get firstDrawMs() {
      return page.firstDrawMs;
    },
    // The whole first map, its links too (a fleet's tiles come first).
    get wholeDrawMs() {
      return page.wholeDrawMs;
    },
    renderer: page.renderer || "canvas",
    cy,
    summary: () => page.map.summary(),
    // Level of detail: whether only the visible part is drawn, at which
    // detail, how much is drawn and how much is held.
    drawing: () => page.map.drawing(),
    // Fleet tile sums kept by diffs against a fresh sum (livemap.js).
    checkTileSums: () => page.map.checkTileSums(),
    search: (query) => page.map.search(query),
    received: () => ({ ...page.socket.received }),
    // A node as the server sent it (drawn or not), as plain JSON.
    heldNode: (id) => JSON.parse(JSON.stringify(page.map.model.nodes.get(id) ?? null)),
    // Where the fleet model places a node (a host: its frame's centre).
    heldPosition: (id) => page.map.model.positionOf(id),
    select: (id) => page.select(id, true),
    nodeNames: () => cy.nodes().map((n) => n.data("label")),
    visibleNames: () => cy.nodes().filter((n) => !n.hasClass("hidden")).map((n) => n.data("label")),
    edgeCount: () => cy.edges().length,
    state: () => document.getElementById("statusbar").dataset.state,
    view: () => ({ ...page.view, hide: [...page.view.hide] }),
    zoom: () => cy.zoom(),
    switching: () => page.levels.switching,
    // Where a node (or an edge's midpoint) is drawn, in page coordinates
    // (to point at it).
    pagePosition(id) {
      const ele = cy.getElementById(id);
      if (ele.empty()) return null;
      const box = page.container.getBoundingClientRect();
      const p = ele.isEdge() ? ele.renderedMidpoint() : ele.renderedPosition();
      return { x: box.left + p.x, y: box.top + p.y };
    },
  });
}
