# Shell functions the bench scripts share (sourced, not run): processes stopped on exit or on
# demand, a wait for a log line, and a local Redis Cluster (plain or TLS) of Debian's
# redis-server on 127.0.0.1.
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

# Stops the processes given by pid (and forgets them).
stop() {
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  local keep=() p pid gone
  for p in "${PIDS[@]}"; do
    gone=0
    for pid in "$@"; do [ "$p" = "$pid" ] && gone=1; done
    [ $gone = 1 ] || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

# How start_redis_cluster starts and reaches its nodes; a TLS cluster sets all three (and puts
# them back after): the flag that takes the node's port, more redis-server arguments, and the
# redis-cli command.
REDIS_PORT_FLAG=--port
REDIS_ARGS=()
REDIS_CLI=(redis-cli)

# Starts a Redis Cluster named $1 (in pid names and logs) of one master per port after it (no
# replicas, no persistence) and waits until it serves. Sets CLUSTER_SEEDS (host:port,...) and
# CLUSTER_SAMPLED ($1-<port>=<pid>,...).
start_redis_cluster() {
  local name="$1" port
  shift
  CLUSTER_SAMPLED=""
  for port in "$@"; do
    mkdir -p "$WORK/redis-$port"
    redis-server "$REDIS_PORT_FLAG" "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$WORK/redis-$port/nodes.conf" --dir "$WORK/redis-$port" \
      --save '' --appendonly no --protected-mode no --maxclients 10000 "${REDIS_ARGS[@]}" \
      >"$WORK/redis-$port.log" 2>&1 &
    PIDS+=($!)
    CLUSTER_SAMPLED+="$name-$port=$!,"
  done
  CLUSTER_SAMPLED="${CLUSTER_SAMPLED%,}"
  for port in "$@"; do
    for _ in $(seq 100); do "${REDIS_CLI[@]}" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  "${REDIS_CLI[@]}" --cluster create $(printf '127.0.0.1:%s ' "$@") --cluster-replicas 0 \
    --cluster-yes >"$WORK/$name-cluster.log"
  for _ in $(seq 100); do
    "${REDIS_CLI[@]}" -p "$1" cluster info | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
  CLUSTER_SEEDS="$(printf '127.0.0.1:%s,' "$@")"
  CLUSTER_SEEDS="${CLUSTER_SEEDS%,}"
}
