# Sourced by run.sh and demo.sh: the processes a script starts in the
# background, all stopped together on Ctrl-C or exit, and the throwaway
# redis-server that may be one of them. Needs PY (the venv's python).

pids=()  # each background process: `cmd & pids+=($!)`

# Stop every process in pids, then say so as "$1: stopped"; the INT, TERM and
# EXIT trap (once: it removes itself).
stop_started() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "$1: stopped"
}

# A redis-server on 127.0.0.1:$1 with Portolan's settings (deploy/redis.conf:
# keeps nothing, compact hashes; its directory: $2); returns once REDIS_URL
# answers, or after 5 s.
start_redis() {
  redis-server "$PWD/deploy/redis.conf" --port "$1" --bind 127.0.0.1 --dir "$2" \
    --loglevel warning &
  pids+=($!)
  for _ in $(seq 50); do
    $PY -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"]).ping()' 2>/dev/null && break
    sleep 0.1
  done
}
