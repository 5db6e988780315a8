# The fleet case of bench/compare (sourced, not run): 8 instances of each system on the plain
# Redis Cluster in turn, 2,000 streams, 20,000 viewers arriving in random order and placed on
# the instances round-robin (a load balancer's), on streams by Zipf; 200 comments/s over the
# streams by Zipf, for 60 s (with --quick, a smoke run: 2,000 viewers, 200 streams, 20
# comments/s, 10 s, on as many instances). The systems: danmaku (a pod subscribes to a stream only
# while it has viewers of it), the Socket.IO peer with its sharded adapter (the same idea),
# Sockudo when it is built, and the Socket.IO peer with its classic adapter (every instance
# receives every stream's comments): the "before".
#
# Around each run, and at the start and end of its measured phase, it reads every master's INFO
# (CPU, network bytes out, each command's calls and time) and CLUSTER INFO (the Pub/Sub
# messages the cluster bus carried), and halfway through the measured phase the Pub/Sub
# subscriptions (shard channels with their subscriber counts, channels, patterns); each
# system's danmaku-bench result carries its instances' CPU and RSS, deliveries and latency.
# `bench/fleet-report` puts them side by side in fleet.md, with the seed's ratios.
#
# Needs from bench/compare: OUT, WORK, BENCH, SECRET, QUICK, OFF, REDIS_PORTS, SEEDS,
# REDIS_SAMPLED, start_danmaku, start_peer (its adapter the third argument), and SOCKUDO=1 with
# start_sockudo when Sockudo is built.

FLEET_SIZE=8

# Prints the Redis figures of every master as one JSON object: {port: {field: number}}: CPU,
# bytes in and out, the Pub/Sub messages the cluster bus carried, and each command's calls
# and CPU (`cmdstat_<command>_calls`, `cmdstat_<command>_usec`).
fleet_redis_snapshot() {
  local port first=1
  printf '{'
  for port in "${REDIS_PORTS[@]}"; do
    [ $first = 1 ] || printf ','
    first=0
    printf '"%s":{' "$port"
    { redis-cli -p "$port" info cpu; redis-cli -p "$port" info stats
      redis-cli -p "$port" info commandstats; redis-cli -p "$port" cluster info; } |
      tr -d '\r' |
      awk -F: '
        /^(used_cpu_(sys|user)|total_net_(input|output)_bytes|cluster_stats_messages_publish(shard)?_(sent|received)):/ {
          printf "%s\"%s\":%s", sep, $1, $2; sep="," }
        /^cmdstat_/ {
          split($2, kv, ","); split(kv[1], calls, "="); split(kv[2], usec, "=")
          name = $1; gsub(/[^A-Za-z0-9_]/, "_", name)
          printf "%s\"%s_calls\":%s,\"%s_usec\":%s", sep, name, calls[2], name, usec[2]; sep="," }'
    printf '}'
  done
  printf '}\n'
}

# Prints the Pub/Sub subscriptions of every master as JSON, from CLIENT LIST: the sum over
# the clients of their shard channels (`ssub`: one per subscribed instance and stream), of
# their channels (`sub`), and how many clients subscribe to patterns (`psub`: each such
# instance receives every stream).
fleet_subscriptions() {
  local port first=1
  printf '{'
  for port in "${REDIS_PORTS[@]}"; do
    [ $first = 1 ] || printf ','
    first=0
    redis-cli -p "$port" client list | awk -v port="$port" '
      { for (i = 1; i <= NF; i++) { split($i, kv, "=")
          if (kv[1] == "ssub") shard += kv[2]
          else if (kv[1] == "sub") plain += kv[2]
          else if (kv[1] == "psub" && kv[2] > 0) patterns++ } }
      END { printf "\"%s\":{\"shard_subscriptions\":%d,\"channel_subscriptions\":%d,\"pattern_subscribers\":%d}",
              port, shard, plain, patterns }'
  done
  printf '}\n'
}

# Runs the fleet load against the system named $1 (a label), whose $FLEET_SIZE instances are
# given as target ($2), urls ($3) and pids ($4); writes its Redis figures beside the result.
fleet_run() {
  local label="$1" target="$2" urls="$3" pids="$4" shape duration
  if [ "$QUICK" = 1 ]; then
    shape=(--viewers 2000 --streams 200 --posters 40 --rate 20)
    duration=10
  else
    shape=(--viewers 20000 --streams 2000 --posters 400 --rate 200)
    duration=60
  fi
  log "fleet-$FLEET_SIZE: $label"
  local redis="$OUT/fleet-redis" said="$WORK/fleet-$label.out"
  mkdir -p "$redis"
  fleet_redis_snapshot >"$redis/$label-before.json"
  # The measured phase (its start is the tool's `ready:` line): Redis's figures at its start
  # and end (the whole run's also count the viewers' arrival and departure), and halfway
  # through, the subscriptions.
  (
    for _ in $(seq 1200); do grep -q '^ready:' "$said" 2>/dev/null && break; sleep 0.1; done
    fleet_redis_snapshot >"$redis/$label-ready.json"
    sleep $((duration / 2))
    fleet_subscriptions >"$redis/$label-subscriptions.json"
    sleep $((duration - duration / 2))
    fleet_redis_snapshot >"$redis/$label-end.json"
  ) &
  local sampler=$!
  if ! "$BENCH" fanout --target "$target" --label "$label" --url "$urls" --pid "$pids" \
    --other-pid "$REDIS_SAMPLED" --case "fleet-$FLEET_SIZE" --out-dir "$OUT" --jwt-secret "$SECRET" \
    "${shape[@]}" --zipf 1.0 --shuffled-arrival --duration "$duration" --workers 3 2>&1 | tee "$said"; then
    [ "${BENCH_STRICT:-0}" = 1 ] && { echo "bench/compare: fleet against $label failed" >&2; exit 1; }
    echo "bench/compare: fleet against $label failed (recorded above); going on" >&2
  fi
  wait "$sampler" || true
  fleet_redis_snapshot >"$redis/$label-after.json"
  sleep 2
}

# Starts $FLEET_SIZE instances with the start function $1 (ports from $2 on, names $3<i>),
# the function's further arguments after them; sets FLEET_URLS, FLEET_PIDS (name=pid,...) and
# FLEET_STARTED (the pids).
fleet_start() {
  local start="$1" port="$2" prefix="$3" i pid
  shift 3
  FLEET_URLS=""
  FLEET_PIDS=""
  FLEET_STARTED=()
  for i in $(seq 1 "$FLEET_SIZE"); do
    pid=$("$start" $((port + i - 1)) "$prefix$i" "$@")
    PIDS+=("$pid")
    FLEET_STARTED+=("$pid")
    FLEET_URLS+="ws://127.0.0.1:$((port + i - 1)),"
    FLEET_PIDS+="$prefix$i=$pid,"
  done
  FLEET_URLS="${FLEET_URLS%,}"
  FLEET_PIDS="${FLEET_PIDS%,}"
}

# The whole case: each system in turn, alone on the cluster.
fleet_case() {
  local base=$((8401 + OFF)) i
  log "fleet-$FLEET_SIZE: danmaku"
  fleet_start start_danmaku "$base" fd
  for i in $(seq 1 "$FLEET_SIZE"); do wait_for_line "$WORK/fd$i.log" "danmaku listening"; done
  fleet_run danmaku danmaku "$FLEET_URLS" "$FLEET_PIDS"
  stop "${FLEET_STARTED[@]}"

  for adapter in sharded classic; do
    local label=socketio
    [ "$adapter" = classic ] && label=socketio-classic
    fleet_start start_peer "$base" "f$adapter" "$adapter"
    for i in $(seq 1 "$FLEET_SIZE"); do wait_for_line "$WORK/f$adapter$i.log" "socketio peer listening"; done
    fleet_run "$label" socketio "$FLEET_URLS" "$FLEET_PIDS"
    stop "${FLEET_STARTED[@]}"
  done

  if [ "${SOCKUDO:-0}" = 1 ]; then
    fleet_start start_sockudo "$base" fs
    for i in $(seq 1 "$FLEET_SIZE"); do
      # The exact address: a config Sockudo could not read would leave it on its defaults.
      wait_for_line "$WORK/fs$i.log" "http server listening.*127.0.0.1:$((base + i - 1))"
    done
    fleet_run sockudo pusher "$FLEET_URLS" "$FLEET_PIDS"
    stop "${FLEET_STARTED[@]}"
  else
    log "fleet-$FLEET_SIZE: Sockudo left out (built only for the full run: bench/peers/sockudo/install)"
  fi
  "$BENCH_FLEET_REPORT" "$OUT" >"$OUT/fleet.md"
  cat "$OUT/fleet.md"
}
