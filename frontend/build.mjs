// Bundles the map app into ../static/portolan/ (map.js + map.css).
// `npm run build` once; `npm run watch` while editing src/.
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const outdir = fileURLToPath(new URL("../static/portolan/", import.meta.url));

const options = {
  entryPoints: [fileURLToPath(new URL("./src/map.js", import.meta.url))],
  outdir,
  bundle: true,
  format: "iife",
  target: ["es2020"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context({ ...options, minify: false });
  await ctx.watch();
} else {
  await esbuild.build(options);
}
