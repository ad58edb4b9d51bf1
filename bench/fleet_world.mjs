// The synthetic fleet the node benchmarks share (bench/tile_sums.mjs,
// bench/metric_diffs.mjs): 500 hosts in 12 zones, 20 containers each,
// 47,533 container-to-container edges, seeded, as the page holds them.

const HOSTS = 500;
const PER_HOST = 20;
const EDGES = 47533;

export function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function world() {
  const rnd = random(17);
  const nodes = [];
  for (let h = 0; h < HOSTS; h += 1) {
    const zone = h % 12;
    nodes.push({ id: `host:h${h}`, type: "host", name: `h${h}`, status: "ok",
      labels: { region: `r${zone % 3}`, zone: `z${zone}` } });
    for (let c = 0; c < PER_HOST; c += 1) {
      nodes.push({ id: `c:h${h}:${c}`, type: "container", parent: `host:h${h}`,
        name: `c${c}`, status: "ok" });
    }
  }
  const containers = nodes.filter((n) => n.type === "container").map((n) => n.id);
  const links = new Map();
  while (links.size < EDGES) {
    const source = containers[Math.floor(rnd() * containers.length)];
    const target = containers[Math.floor(rnd() * containers.length)];
    if (source === target || links.has(`${source}|${target}`)) continue;
    links.set(`${source}|${target}`, { source, target, connections: Math.floor(rnd() * 1000),
      connections_per_s: rnd() * 20, bytes: Math.floor(rnd() * 1e6), status: "ok" });
  }
  return { nodes, links: [...links.values()] };
}

