# Shell functions the bench scripts share (sourced, not run): processes stopped on exit, a wait
# for a log line, and a local Redis Cluster of Debian's redis-server on 127.0.0.1.
#
# The sourcing script sets WORK (a scratch directory, removed on exit) and NAME (its name, for
# messages) before calling these.

PIDS=()

# Stops every process started (PIDS) and removes WORK; installed as the EXIT trap.
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}

# Waits until a line matching $2 appears in log file $1 (or fails after 30 s).
wait_for_line() {
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$NAME: timed out waiting for '$2' in $1:" >&2
  tail -20 "$1" >&2
  return 1
}

# Starts a Redis Cluster of one master per port given (no replicas, no persistence) and waits
# until it serves. Sets SEEDS (host:port,...) and REDIS_SAMPLED (redis-<port>=<pid>,...).
start_redis_cluster() {
  REDIS_SAMPLED=""
  local port
  for port in "$@"; do
    mkdir -p "$WORK/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$WORK/redis-$port/nodes.conf" --dir "$WORK/redis-$port" \
      --save '' --appendonly no --protected-mode no --maxclients 10000 \
      >"$WORK/redis-$port.log" 2>&1 &
    PIDS+=($!)
    REDIS_SAMPLED+="redis-$port=$!,"
  done
  REDIS_SAMPLED="${REDIS_SAMPLED%,}"
  for port in "$@"; do
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "$@") --cluster-replicas 0 --cluster-yes \
    >"$WORK/cluster.log"
  for _ in $(seq 100); do
    redis-cli -p "$1" cluster info | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
  SEEDS="$(printf '127.0.0.1:%s,' "$@")"
  SEEDS="${SEEDS%,}"
}
