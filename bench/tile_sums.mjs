// Tile sums: the time a diff of traffic takes to move a 10,000-container
// fleet's host and group sums (frontend/src/tilesums.js, via fleet.js
// FleetModel as the page uses it), for this source tree and, side by side in
// one run, another one (e.g. an earlier commit's frontend/src).
//
//     node --expose-gc bench/tile_sums.mjs [OLD/frontend/src] [--rounds 20]
//
// A synthetic fleet (500 hosts in 12 zones, 20 containers each, 47,533
// container-to-container edges, seeded), then rounds of diffs as the page
// gets them (whole changed edges, after livemap.js mergeUpdates): 5,000 edges
// whose rate moved, and 5,000 whose summed figures did not (only bytes).
// Times the sums' update (``sums.update``) and the choice of the 800
// strongest summed edges, best and median of the rounds (with --expose-gc,
// the garbage of making the diff is collected before each timing).

import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { random, world } from "./fleet_world.mjs";

const args = process.argv.slice(2);
const roundsAt = args.indexOf("--rounds");
const ROUNDS = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 20;
const trees = [["after", path.resolve(new URL("../frontend/src", import.meta.url).pathname)]];
const old = args.find((a, i) => !a.startsWith("--") && (roundsAt < 0 || i !== roundsAt + 1));
if (old) trees.unshift(["before", path.resolve(old)]);

const CHANGED = 5000;

// A diff of ``count`` whole changed edges of ``model`` (``ids``: its edge
// ids): the rate moved, or (``summed`` false) only the bytes.
function diff(model, ids, count, summed, rnd) {
  const changed = [];
  for (let i = 0; i < count; i += 1) {
    const edge = model.edges.get(ids[Math.floor(rnd() * ids.length)]);
    changed.push(summed
      ? { ...edge, connections_per_s: rnd() * 20, connections: edge.connections + 3 }
      : { ...edge, bytes: edge.bytes + 100 });
  }
  return { changed_edges: changed };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const graph = world();
const results = [];
for (const [label, dir] of trees) {
  const { FleetModel } = await import(pathToFileURL(path.join(dir, "fleet.js")).href);
  const model = new FleetModel();
  model.fill(structuredClone(graph));
  model.summarise();
  const rnd = random(5);
  const ids = [...model.edges.keys()];
  for (const summed of [true, false]) {
    const update = [];
    const choose = [];
    for (let r = 0; r < ROUNDS; r += 1) {
      model.applyDiff(diff(model, ids, CHANGED, summed, rnd));
      globalThis.gc?.();
      let t = performance.now();
      model.sums.update();
      update.push(performance.now() - t);
      globalThis.gc?.();
      t = performance.now();
      model.summarise();
      choose.push(performance.now() - t);
    }
    results.push({ label, summed, update, choose });
  }
}
for (const { label, summed, update, choose } of results) {
  const what = summed ? "rates moved" : "bytes only ";
  console.log(`${label.padEnd(6)} ${CHANGED} edges, ${what}: update best ` +
    `${Math.min(...update).toFixed(1)} ms, median ${median(update).toFixed(1)} ms; ` +
    `strongest 800: median ${median(choose).toFixed(1)} ms (${ROUNDS} rounds)`);
}
