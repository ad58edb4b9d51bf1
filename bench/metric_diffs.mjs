// A second of a fleet whose containers' metrics all move, on the page: the
// builder's diff as it was (each container's whole ``metrics`` in
// ``updated_nodes``) against as it is now (the moved figures alone in
// ``updated_metrics``), both applied by this tree's code as the page does
// (JSON.parse, updates.js mergeUpdates, fleet.js FleetModel.applyDiff, the
// tile sums' update), side by side in one run.
//
//     node --expose-gc bench/metric_diffs.mjs [--rounds 10]
//
// The fleet is bench/fleet_world.mjs' (10,000 containers, 47,533 edges);
// each container carries the ~22 cgroup figures a collector reports
// (collector/container_metrics.py), moved each round as
// bench/synthetic_world.py advance_metrics moves them: CPU and memory wander,
// the network counters grow, a write now and then. Not covered: Cytoscape's
// redraw, which the page runs after a diff that changed the model
// ("redraws" below) and not after one that did not.

import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { random, world } from "./fleet_world.mjs";

const args = process.argv.slice(2);
const roundsAt = args.indexOf("--rounds");
const ROUNDS = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 10;
const src = path.resolve(new URL("../frontend/src", import.meta.url).pathname);
const { FleetModel } = await import(pathToFileURL(path.join(src, "fleet.js")).href);
const { mergeUpdates } = await import(pathToFileURL(path.join(src, "updates.js")).href);

function firstMetrics(rnd) {
  return {
    cgroup_version: 2, cpu_limit_cores: null, cpu_percent_of_limit: null,
    cpu_throttled_ratio: null, cpu_throttled_periods: 0, cpu_throttled_ns: 0,
    cpu_cores: 0.1, memory_usage_bytes: Math.floor(40 + rnd() * 360) * 2 ** 20,
    memory_working_set_bytes: 0, memory_limit_bytes: null, memory_oom_kills: 0,
    io_read_bytes: Math.floor(rnd() * 2 ** 30), io_write_bytes: 0,
    io_read_ops: Math.floor(rnd() * 2 ** 16), io_write_ops: 0,
    io_read_bytes_per_s: 0, io_write_bytes_per_s: 0, pids: 1 + Math.floor(rnd() * 40),
    pids_limit: null, net_rx_bytes: Math.floor(rnd() * 2 ** 32),
    net_tx_bytes: Math.floor(rnd() * 2 ** 32), net_rx_bytes_per_s: 0, net_tx_bytes_per_s: 0,
  };
}

// The next report's figures (as advance_metrics), and which of them moved.
function advance(m, rnd) {
  const next = { ...m };
  next.cpu_cores = Math.round((0.0005 + rnd() * 0.4) * 1e4) / 1e4;
  next.memory_usage_bytes += (Math.floor(rnd() * 129) - 64) * 4096;
  next.memory_working_set_bytes = next.memory_usage_bytes - Math.floor(rnd() * 1025) * 4096;
  const written = rnd() < 0.3 ? Math.floor(rnd() * 33) * 4096 : 0;
  next.io_write_bytes += written;
  next.io_write_ops += written / 4096;
  next.io_write_bytes_per_s = written;
  const rx = Math.floor(rnd() * 200001);
  const tx = Math.floor(rnd() * 50001);
  next.net_rx_bytes += rx;
  next.net_tx_bytes += tx;
  next.net_rx_bytes_per_s = rx;
  next.net_tx_bytes_per_s = tx;
  const moved = {};
  for (const [k, v] of Object.entries(next)) if (m[k] !== v) moved[k] = v;
  return { next, moved };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const graph = world();
const rnd = random(3);
const containers = graph.nodes.filter((n) => n.type === "container");
for (const node of containers) node.metrics = firstMetrics(rnd);
// Every round's two messages, made before any timing.
const rounds = [];
let current = new Map(containers.map((n) => [n.id, n.metrics]));
for (let r = 0; r < ROUNDS; r += 1) {
  const whole = [];
  const moved = [];
  const next = new Map();
  for (const [id, m] of current) {
    const step = advance(m, rnd);
    next.set(id, step.next);
    whole.push({ id, metrics: step.next });
    moved.push({ id, metrics: step.moved });
  }
  current = next;
  rounds.push({
    before: JSON.stringify({ type: "diff", updated_nodes: whole, updated_metrics: [] }),
    after: JSON.stringify({ type: "diff", updated_nodes: [], updated_metrics: moved }),
  });
}

const results = [];
for (const shape of ["before", "after"]) {
  const model = new FleetModel();
  model.fill(structuredClone(graph));
  model.summarise();
  const parse = [];
  const apply = [];
  let redraws = 0;
  for (const round of rounds) {
    globalThis.gc?.();
    let t = performance.now();
    const diff = JSON.parse(round[shape]);
    parse.push(performance.now() - t);
    globalThis.gc?.();
    t = performance.now();
    const changed = model.applyDiff(mergeUpdates(diff, model, []));
    if (changed) model.sums.update();
    apply.push(performance.now() - t);
    if (changed) redraws += 1;
  }
  // Each shape must leave the page holding the same figures.
  const held = containers.map((n) => model.nodes.get(n.id).metrics);
  results.push({ shape, parse, apply, redraws, bytes: rounds[0][shape].length, held });
}
const [before, after] = results;
const same = JSON.stringify(before.held) === JSON.stringify(after.held);
for (const { shape, parse, apply, redraws, bytes } of results) {
  console.log(`${shape.padEnd(6)} ${containers.length} containers' metrics moved: ` +
    `${(bytes / 1e6).toFixed(2)} MB of JSON; parse median ${median(parse).toFixed(1)} ms, ` +
    `apply median ${median(apply).toFixed(1)} ms (best ${Math.min(...apply).toFixed(1)}); ` +
    `redraws ${redraws} of ${ROUNDS}`);
}
console.log(`ratios after/before: JSON ${(after.bytes / before.bytes).toFixed(2)}, ` +
  `parse ${(median(after.parse) / median(before.parse)).toFixed(2)}, ` +
  `apply ${(median(after.apply) / median(before.apply)).toFixed(2)}; ` +
  `same figures held: ${same}`);
if (!same) process.exitCode = 1;
