// The map's controls: gestures on the map, the toolbar (search, filters, zoom
// buttons), level links and crumbs, and the time slider.
//
// Each control writes the page's view (viewstate.js) and asks the page, the
// live map or the level switcher to act; sync() writes the view back into the
// controls (a URL opened, a level switched).

import { hostOf, nodeKind, ownerOf } from "./graph.js";

const $ = (id) => document.getElementById(id);
const FILTER_MENUS = ["ns", "project", "image"];

function formatAgo(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export class Controls {
  constructor(page) {
    this.page = page;
  }

  bind() {
    this.bindMap();
    this.bindToolbar();
  }

  // Pointer, wheel and keyboard on the map itself.
  bindMap() {
    const page = this.page;
    const levels = page.levels;
    const cy = page.cy;
    // Cytoscape caches where its container is on the page; the toolbar above
    // it can wrap (long filter values) and move it, so tell it on any change.
    new ResizeObserver(() => cy.resize()).observe(page.container);
    cy.on("mouseover", "node, edge", (event) => {
      const p = event.renderedPosition || { x: 0, y: 0 };
      page.tooltip.show(event.target, p.x, p.y);
    });
    cy.on("mouseout", "node, edge", () => page.tooltip.hide());
    cy.on("viewport", () => {
      page.tooltip.hide();
      const z = cy.zoom();
      const pan = cy.pan();
      page.view.zoom = z;
      page.view.x = (cy.width() / 2 - pan.x) / z;
      page.view.y = (cy.height() / 2 - pan.y) / z;
      page.syncUrl();
    });
    cy.on("tap", (event) => {
      if (event.target === cy) {
        page.closeDetails();
        return;
      }
      page.select(event.target.id(), false);
    });
    cy.on("dbltap", "node", (event) => levels.openNode(event.target));
    let direction = 0;
    page.container.addEventListener(
      "wheel",
      (event) => {
        const box = page.container.getBoundingClientRect();
        levels.pointer = { x: event.clientX - box.left, y: event.clientY - box.top };
        direction = event.deltaY < 0 ? 1 : -1;
      },
      { capture: true, passive: true },
    );
    cy.on("scrollzoom", () => levels.checkSemanticZoom(direction));
    let pinchStart = null;
    cy.on("pinchzoom", () => {
      const z = cy.zoom();
      if (pinchStart !== null) levels.checkSemanticZoom(z > pinchStart ? 1 : -1);
      pinchStart = z;
    });
    window.addEventListener("keydown", (event) => {
      if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
      if (event.key === "f" && !event.ctrlKey && !event.metaKey && !event.altKey) page.map.fit();
      if (event.key === "Escape") page.closeDetails();
    });
  }

  bindToolbar() {
    const page = this.page;
    const view = page.view; // the page keeps this one object
    const search = $("search");
    search.addEventListener("input", () => {
      view.q = search.value;
      this.runSearch(true);
      page.syncUrl();
    });
    search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        const first = this.runSearch(true)[0];
        if (first) {
          page.results.hide();
          page.select(first.id, true);
        }
      } else if (event.key === "Escape") {
        search.value = "";
        view.q = "";
        this.runSearch(true);
        page.syncUrl();
      }
    });
    search.addEventListener("focus", () => view.q && this.runSearch(true));
    document.addEventListener("click", (event) => {
      if (!event.target.closest(".search")) page.results.hide();
    });
    for (const key of FILTER_MENUS) {
      $(`filter-${key}`).addEventListener("change", (event) => {
        view[key] = event.target.value;
        this.filtersChanged();
      });
    }
    $("filter-label").addEventListener("change", (event) => {
      view.label = event.target.value.trim();
      this.filtersChanged();
    });
    for (const option of ["idle", "external"]) {
      $(`hide-${option}`).addEventListener("change", (event) => {
        const hide = new Set(view.hide);
        if (event.target.checked) hide.add(option);
        else hide.delete(option);
        view.hide = ["idle", "external"].filter((h) => hide.has(h));
        this.filtersChanged();
      });
    }
    $("zoom-in").addEventListener("click", () => this.zoomBy(1.4));
    $("zoom-out").addEventListener("click", () => this.zoomBy(1 / 1.4));
    $("fit").addEventListener("click", () => page.map.fit());
    for (const link of document.querySelectorAll("nav.levels a[data-level]")) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        const level = link.dataset.level;
        const focus = level === "container" ? hostOf(view.focus || "") || "" : "";
        page.levels.switchLevel(level, focus);
      });
    }
    const slider = $("time");
    const timeLabel = $("time-label");
    slider.addEventListener("input", () => {
      const ago = -Number(slider.value);
      timeLabel.textContent = ago ? `${formatAgo(ago)} ago` : "live";
    });
    slider.addEventListener("change", () => {
      const ago = -Number(slider.value);
      if (ago <= 0) page.goLive();
      else page.loadPast(Date.now() / 1000 - ago);
    });
    $("live").addEventListener("click", () => page.goLive());
  }

  zoomBy(factor) {
    const cy = this.page.cy;
    const level = cy.zoom() * factor;
    const pointer = { x: cy.width() / 2, y: cy.height() / 2 };
    this.page.levels.pointer = pointer;
    cy.zoom({ level, renderedPosition: pointer });
    this.page.levels.checkSemanticZoom(factor > 1 ? 1 : -1);
  }

  filtersChanged() {
    const page = this.page;
    const hidden = page.map.applyFilters(page.view);
    const { nodes, edges } = page.map.counts();
    page.status.setCounts(nodes, edges, hidden);
    if (page.view.q) this.runSearch(false);
    page.syncUrl();
  }

  runSearch(showList) {
    const page = this.page;
    const query = page.view.q.trim();
    const matches = page.map.search(query);
    if (showList && query) page.results.show(matches);
    else if (!query) page.results.hide();
    return matches;
  }

  // The filter menus list the values present on the map (and the chosen one).
  fillFilterChoices() {
    const view = this.page.view;
    const values = this.page.map.filterChoices();
    for (const [key, set] of Object.entries(values)) {
      if (view[key]) set.add(view[key]);
      const select = $(`filter-${key}`);
      const wanted = [...set].sort();
      const have = [...select.options].slice(1).map((o) => o.value);
      if (wanted.join("\u0000") === have.join("\u0000")) continue;
      const first = select.options[0];
      select.replaceChildren(first, ...wanted.map((v) => new Option(v, v)));
      select.value = view[key];
    }
  }

  // Write the view into the search box, filters and time slider.
  sync() {
    const view = this.page.view;
    $("search").value = view.q;
    $("filter-label").value = view.label;
    $("hide-idle").checked = view.hide.includes("idle");
    $("hide-external").checked = view.hide.includes("external");
    for (const key of FILTER_MENUS) {
      const select = $(`filter-${key}`);
      if (view[key] && ![...select.options].some((o) => o.value === view[key])) {
        select.append(new Option(view[key], view[key]));
      }
      select.value = view[key];
    }
    const slider = $("time");
    const live = view.at === null;
    const ago = live ? 0 : Math.max(0, Math.round(Date.now() / 1000 - view.at));
    slider.value = String(-Math.min(ago, Number(-slider.min)));
    $("time-label").textContent = live ? "live" : `${formatAgo(ago)} ago`;
    $("live").disabled = live;
    document.body.dataset.time = live ? "live" : "past";
  }

  showLevelNav() {
    for (const link of document.querySelectorAll("nav.levels a[data-level]")) {
      const current = link.dataset.level === this.page.map.level;
      link.classList.toggle("current", current);
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  // Hosts › host › container: where the focus is, each step a way back up.
  showCrumbs() {
    const page = this.page;
    const level = page.map.level;
    const go = (to, focus) => () => page.levels.switchLevel(to, focus);
    const focus = page.view.focus;
    const steps = [["Hosts", go("host", "")]];
    const host = focus ? hostOf(focus) : null;
    if (host && level !== "host") {
      steps.push([page.nameOf(host), go("container", host)]);
    }
    const container =
      focus && nodeKind(focus) === "container" ? focus : focus && ownerOf(focus);
    if (container && level === "service") {
      steps.push([page.nameOf(container), go("service", container)]);
    }
    const items = steps.map(([name, onClick], i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.disabled = i === steps.length - 1;
      button.addEventListener("click", onClick);
      return button;
    });
    const hint = document.createElement("span");
    hint.className = "crumb-hint";
    hint.textContent =
      level === "service"
        ? "zoom out to go back"
        : "zoom in or double-click to open";
    $("crumbs").replaceChildren(...items, hint);
  }
}
