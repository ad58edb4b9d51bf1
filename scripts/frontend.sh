#!/usr/bin/env bash
# Builds the map's JavaScript and CSS into static/portolan/ (offline: npm's
# registry only at install time, no CDN at run time). Skips when up to date.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
out=../static/portolan/map.js
if [ -f "$out" ] && [ -z "$(find src package.json package-lock.json build.mjs -newer "$out" 2>/dev/null)" ]; then
  exit 0
fi
[ -d node_modules ] && [ ! package-lock.json -nt node_modules ] || npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
