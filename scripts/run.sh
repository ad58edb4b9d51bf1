#!/usr/bin/env bash
# `make run`: everything needed to open the map on this host, then the map.
# Starts a Redis if none answers at REDIS_URL, one collector, the analyzer,
# the graph builder and Daphne;
# Ctrl-C stops all it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export PORTOLAN_BIND=${PORTOLAN_BIND:-127.0.0.1}
export PORTOLAN_PORT=${PORTOLAN_PORT:-8000}
PY=.venv/bin/python

bash scripts/install-deps.sh run
bash scripts/venv.sh
bash scripts/frontend.sh
$PY manage.py migrate --noinput -v 0
$PY manage.py ensureadmin

# shellcheck source=scripts/started.sh
source scripts/started.sh
trap 'stop_started portolan' INT TERM EXIT

if ! $PY -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=1).ping()' 2>/dev/null; then
  port=$($PY -c 'import os, urllib.parse as u; print(u.urlparse(os.environ["REDIS_URL"]).port or 6379)')
  redis_dir="${PORTOLAN_VAR_DIR:-var}/redis"
  mkdir -p "$redis_dir"
  echo "portolan: starting redis-server on 127.0.0.1:$port" >&2
  start_redis "$port" "$redis_dir"
fi

$PY -m collector &
pids+=($!)
$PY manage.py analyze &
pids+=($!)
$PY manage.py builder &
pids+=($!)
.venv/bin/daphne -b "$PORTOLAN_BIND" -p "$PORTOLAN_PORT" webapp.asgi:application &
pids+=($!)

echo
echo "portolan: the map is at http://$PORTOLAN_BIND:$PORTOLAN_PORT/  (Ctrl-C stops)"
echo
wait -n "${pids[@]}"
