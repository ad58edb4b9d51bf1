#!/usr/bin/env bash
# `make demo`: the map on the shipped capture (demo/demo.capture), replayed in a
# loop. No Docker, no root, no eBPF: its own redis-server on a free loopback
# port, the replay, the analyzer, the graph builder and Daphne. Ctrl-C stops
# everything it started. DEMO_CAPTURE=FILE... replays other captures,
# DEMO_SPEED=X replays X times faster.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
captures=${DEMO_CAPTURE:-demo/demo.capture}

command -v redis-server >/dev/null || {
  echo "demo: redis-server is missing (Debian: apt-get install redis-server)" >&2; exit 1; }
bash scripts/venv.sh
[ -f static/portolan/map.js ] || bash scripts/frontend.sh

free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export PORTOLAN_VAR_DIR=${PORTOLAN_VAR_DIR:-var/demo}
export PORTOLAN_BIND=${PORTOLAN_BIND:-127.0.0.1}
export PORTOLAN_PORT=${PORTOLAN_PORT:-$(free_port)}
redis_port=$(free_port)
export REDIS_URL=redis://127.0.0.1:$redis_port/0
unset CHANNEL_REDIS_URL
mkdir -p "$PORTOLAN_VAR_DIR/redis"
chmod 700 "$PORTOLAN_VAR_DIR"

$PY manage.py migrate --noinput -v 0
$PY manage.py ensureadmin >/dev/null

# shellcheck source=scripts/started.sh
source scripts/started.sh
trap 'stop_started demo' INT TERM EXIT

start_redis "$redis_port" "$PORTOLAN_VAR_DIR/redis"

# shellcheck disable=SC2086 # several captures may be given
$PY manage.py replay --loop --speed "${DEMO_SPEED:-1}" $captures &
pids+=($!)
$PY manage.py analyze &
pids+=($!)
$PY manage.py builder &
pids+=($!)
.venv/bin/daphne -b "$PORTOLAN_BIND" -p "$PORTOLAN_PORT" webapp.asgi:application 2>/dev/null &
pids+=($!)

# The URL once it answers.
for _ in $(seq 300); do
  $PY -c 'import os, urllib.request as u; u.urlopen(f"http://{os.environ["PORTOLAN_BIND"]}:{os.environ["PORTOLAN_PORT"]}/healthz", timeout=1)' 2>/dev/null && break
  sleep 0.1
done

login=${PORTOLAN_ADMIN_USER:-admin}
if [ -n "${PORTOLAN_ADMIN_PASSWORD:-}" ]; then
  password="(from PORTOLAN_ADMIN_PASSWORD)"
else
  password=$(cat "$PORTOLAN_VAR_DIR/admin_password" 2>/dev/null || echo "(unchanged)")
fi
echo
echo "demo: replaying $captures"
echo "demo: the map is at http://$PORTOLAN_BIND:$PORTOLAN_PORT/"
echo "demo: login $login, password $password  (Ctrl-C stops)"
echo
wait -n "${pids[@]}"
