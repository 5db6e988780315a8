"""The capacity model behind bench/capacity (docs/capacity.md explains it).

Reads a bench/compare result directory (danmaku's runs), takes the measured figures from it
(each with the run it came from), reads the Helm chart's pod limits and settings, and sizes
two plans: (a) one stream with many viewers, (b) many streams with Zipf popularity. Standard
library only (Debian's /usr/bin/python3). bench/capacity is the command line; the tests in
tests/capacity import this module.
"""

import argparse
import json
import math
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "danmaku" / "values.yaml"
GIB = 1024**3
MIB = 1024**2

# Prices: assumptions, not quotes. Round numbers near public clouds' on-demand list prices;
# pass your own (--price-*).
PRICE_VCPU_HOUR = 0.04
PRICE_GIB_HOUR = 0.005
PRICE_EGRESS_GB = 0.05
PRICE_REDIS_SHARD_HOUR = 0.30
HOURS_PER_MONTH = 730


class CapacityError(Exception):
    """Bad input: a clear message, exit status 2."""


# --- the chart -------------------------------------------------------------------------------


def parse_values(text):
    """The mappings of a block-style YAML file like the chart's values.yaml, flattened to
    dotted keys ("resources.limits.memory" -> "2Gi"). Lists, flow collections and multi-line
    scalars are not read (the keys this model needs are plain scalars)."""
    out = {}
    stack = []  # (indent, key)
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        m = re.match(r"^( *)([A-Za-z0-9_.-]+):(?:\s+(.*?))?\s*$", line)
        if not m:
            continue
        indent, key, value = len(m.group(1)), m.group(2), m.group(3) or ""
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        value = re.sub(r"\s+#.*$", "", value).strip()
        if value:
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[".".join(k for _, k in stack)] = value
    return out


def quantity(text, what):
    """A Kubernetes quantity as a number: CPU ("1", "500m") in cores, memory ("2Gi",
    "512Mi", "2G") in bytes."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", text.strip())
    if not m:
        raise CapacityError(f"the chart's {what} is not a quantity: {text!r}")
    scale = {None: 1, "m": 1e-3, "Ki": 1024, "Mi": MIB, "Gi": GIB, "Ti": 1024 * GIB,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)]
    return float(m.group(1)) * scale


def chart_settings(path):
    """What the plans take from the chart: pod limits and requests, the HPA and the DANMAKU_*
    settings that bear on capacity."""
    try:
        values = parse_values(pathlib.Path(path).read_text())
    except OSError as e:
        raise CapacityError(f"cannot read the chart's values ({e}): pass --chart") from e

    def need(key):
        if key not in values:
            raise CapacityError(f"{path} has no {key}")
        return values[key]

    return {
        "cpu_limit": quantity(need("resources.limits.cpu"), "resources.limits.cpu"),
        "memory_limit": quantity(need("resources.limits.memory"), "resources.limits.memory"),
        "cpu_request": quantity(need("resources.requests.cpu"), "resources.requests.cpu"),
        "hpa_target_pct": float(need("autoscaling.targetCPUUtilizationPercentage")),
        "max_replicas": int(need("autoscaling.maxReplicas")),
        "ready_threshold": float(need("config.DANMAKU_CPU_READY_THRESHOLD")),
        "max_connections": int(need("config.DANMAKU_MAX_CONNECTIONS")),
        "viewer_max_rate": float(need("config.DANMAKU_VIEWER_MAX_RATE")),
        "coalesce_ms": float(need("config.DANMAKU_COALESCE_MS")),
    }


def fd_budget(nofile):
    """WebSockets an instance takes with DANMAKU_MAX_CONNECTIONS=0: the open-file limit less
    its headroom, 64 files or 5 %, whichever is more (src/serve.rs, SocketPlan)."""
    return nofile - max(64, nofile // 20)


# --- the runs --------------------------------------------------------------------------------


def load_runs(result_dir):
    """danmaku's runs in a bench/compare result directory: (file name, result) pairs. The
    floor's runs (target danmaku, label floor) are not danmaku's."""
    d = pathlib.Path(result_dir)
    if not d.is_dir():
        raise CapacityError(f"{result_dir}: not a directory (a bench/compare result directory)")
    runs = []
    for path in sorted(d.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CapacityError(f"{path}: not a readable JSON result ({e})") from e
        if not (isinstance(data, dict) and isinstance(data.get("summary"), dict)
                and isinstance(data.get("params"), dict)):
            continue
        if data.get("target") == "danmaku" and data.get("label") != "floor":
            runs.append((path.name, data))
    if not runs:
        raise CapacityError(f"{result_dir}: no danmaku run (a *.json result of danmaku-bench)")
    return runs


def describe(data):
    """A run's shape in a few words."""
    p, s = data["params"], data["summary"]
    words = [f"{int(p.get('viewers') or s.get('connections') or 0):,} viewers"]
    if data.get("scenario") == "fanout":
        words += [f"{p.get('streams')} stream{'s' if p.get('streams') != 1 else ''}",
                  f"{p.get('rate'):g} c/s"]
    words.append(f"{len(data.get('urls') or [])} instance{'s' if len(data.get('urls') or []) != 1 else ''}")
    return ", ".join(words)


def popularity(n, s, hot):
    """danmaku-bench's stream weights (bench/danmaku-bench/src/plan.rs): Zipf 1/(rank+1)^s;
    with `hot`, the first stream takes that fraction and the rest share the remainder."""
    zipf = [1.0 / (i + 1) ** s for i in range(n)]
    if hot is not None and n > 1:
        rest = sum(zipf[1:])
        return [hot] + [(1.0 - hot) * w / rest for w in zipf[1:]]
    return zipf


def apportion(total, weights):
    """danmaku-bench's split of `total` by `weights` (largest remainder)."""
    s = sum(weights)
    if not weights or s <= 0:
        return [0] * len(weights)
    exact = [total * w / s for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def subscribed_per_comment(data):
    """Instances subscribed to the stream of an average accepted comment in a fan-out run.
    danmaku-bench deals connections (posters first, then each stream's viewers) to the
    instances in turn, so a stream with c connections is on min(instances, c) of them;
    every poster posts at the same rate, so a stream's share of the comments is its share of
    the posters."""
    p = data["params"]
    instances = len(data.get("urls") or [])
    weights = popularity(int(p["streams"]), float(p.get("zipf") or 1.0), p.get("hot"))
    viewers = apportion(int(p["viewers"]), weights)
    posters = apportion(int(p["posters"]), weights)
    total = sum(posters)
    if total == 0:
        return None
    return sum(ps / total * min(instances, v + ps) for v, ps in zip(viewers, posters))


def _fanout(runs):
    return [(n, d) for n, d in runs
            if d.get("scenario") == "fanout"
            and d["summary"].get("server_cpu_ms_per_1k_deliveries")
            and (d["summary"].get("deliveries") or 0) > 0]


def pick_hot(runs, rate):
    """The single-stream fan-out run nearest plan (a)'s rate: on Redis (2+ instances) before
    the embedded broker, plain before compressed, then the most viewers."""
    cands = [(n, d) for n, d in _fanout(runs) if d["params"].get("streams") == 1]
    cands.sort(key=lambda r: (abs(float(r[1]["params"]["rate"]) - rate),
                              len(r[1]["urls"]) < 2, bool(r[1]["params"].get("deflate")),
                              -int(r[1]["params"]["viewers"]), r[0]))
    return cands[0] if cands else None


def pick_zipf(runs):
    """The multi-stream fan-out run: on Redis first, plain first, then the most streams."""
    cands = [(n, d) for n, d in _fanout(runs) if (d["params"].get("streams") or 0) > 1]
    cands.sort(key=lambda r: (len(r[1]["urls"]) < 2, bool(r[1]["params"].get("deflate")),
                              -int(r[1]["params"]["streams"]), -int(r[1]["params"]["viewers"]),
                              r[0]))
    return cands[0] if cands else None


def pick_idle(runs):
    """The idle run holding the most connections."""
    cands = [(n, d) for n, d in runs
             if d.get("scenario") == "idle"
             and d["summary"].get("rss_per_connection_bytes") is not None
             and d["summary"].get("cpu_us_per_connection_s") is not None]
    cands.sort(key=lambda r: (-int(r[1]["summary"].get("connections") or 0), r[0]))
    return cands[0] if cands else None


def redis_candidates(runs):
    """Every fan-out run on Redis (2+ instances) with Redis's CPU sampled: (name, data,
    Redis CPU s, accepted comments, instances subscribed per comment, µs per comment per
    subscribed instance)."""
    out = []
    for n, d in _fanout(runs):
        s = d["summary"]
        if len(d["urls"]) < 2 or not s.get("other_cpu_s") or not s.get("accepted_comments"):
            continue
        per = subscribed_per_comment(d)
        if not per:
            continue
        us = s["other_cpu_s"] * 1e6 / (s["accepted_comments"] * per)
        out.append((n, d, s["other_cpu_s"], s["accepted_comments"], per, us))
    return out


def pick_bytes(runs, hot_name):
    """A fan-out run that counted wire bytes: plain before compressed, the hot run first,
    then the most deliveries."""
    cands = [(n, d) for n, d in _fanout(runs) if d["summary"].get("wire_bytes_per_delivery")]
    cands.sort(key=lambda r: (bool(r[1]["params"].get("deflate")), r[0] != hot_name,
                              -int(r[1]["summary"]["deliveries"]), r[0]))
    return cands[0] if cands else None


def figure(value, unit, source):
    return {"value": value, "unit": unit, "source": source}


def measure(result_dir, args):
    """The measured inputs, each with its source (a run of the directory, or the option that
    overrode it)."""
    runs = load_runs(result_dir)
    m = {}

    def given(opt):
        return f"--{opt} (given)"

    hot = pick_hot(runs, args.a_rate)
    if args.cpu_ms_per_1k_hot is not None:
        m["cpu_hot"] = figure(args.cpu_ms_per_1k_hot, "ms per 1k deliveries", given("cpu-ms-per-1k-hot"))
    elif hot:
        s = hot[1]["summary"]
        m["cpu_hot"] = figure(s["server_cpu_ms_per_1k_deliveries"], "ms per 1k deliveries",
                              f"{hot[0]} ({describe(hot[1])})")
        if s.get("frames"):
            m["cpu_hot"]["comments_per_frame"] = s["deliveries"] / s["frames"]
    else:
        raise CapacityError(f"{result_dir}: no single-stream fan-out run of danmaku: pass --cpu-ms-per-1k-hot")

    zipf = pick_zipf(runs)
    if args.cpu_ms_per_1k_zipf is not None:
        m["cpu_zipf"] = figure(args.cpu_ms_per_1k_zipf, "ms per 1k deliveries", given("cpu-ms-per-1k-zipf"))
    elif zipf:
        m["cpu_zipf"] = figure(zipf[1]["summary"]["server_cpu_ms_per_1k_deliveries"],
                               "ms per 1k deliveries", f"{zipf[0]} ({describe(zipf[1])})")
    else:
        raise CapacityError(f"{result_dir}: no multi-stream (Zipf) fan-out run of danmaku: pass --cpu-ms-per-1k-zipf")

    _measure_idle(m, runs, result_dir, args)
    _measure_redis(m, runs, result_dir, args)

    if args.bytes_per_delivery is not None:
        m["bytes"] = figure(args.bytes_per_delivery, "bytes per delivery", given("bytes-per-delivery"))
    else:
        b = pick_bytes(runs, hot[0] if hot else None)
        if not b:
            raise CapacityError(
                f"{result_dir}: no run has wire_bytes_per_delivery (results before danmaku-bench "
                "counted wire bytes): pass --bytes-per-delivery N (e.g. from "
                "bench/results/compression-*/: ~181 plain, ~43 compressed at 5 comments a frame)")
        m["bytes"] = figure(b[1]["summary"]["wire_bytes_per_delivery"], "bytes per delivery",
                            f"{b[0]} ({describe(b[1])}{', compressed' if b[1]['params'].get('deflate') else ''})")
    return m


def _measure_idle(m, runs, result_dir, args):
    idle = pick_idle(runs)
    src = f"{idle[0]} ({describe(idle[1])})" if idle else None
    s = idle[1]["summary"] if idle else {}
    for key, opt, field, unit in (
            ("rss_conn", "rss-per-connection-bytes", "rss_per_connection_bytes", "bytes"),
            ("idle_cpu", "idle-cpu-us-per-connection", "cpu_us_per_connection_s", "µs per s")):
        value = getattr(args, opt.replace("-", "_"))
        if value is not None:
            m[key] = figure(value, unit, f"--{opt} (given)")
        elif idle:
            m[key] = figure(s[field], unit, src)
        else:
            raise CapacityError(f"{result_dir}: no idle run of danmaku: pass --{opt}")
    if args.base_rss_mib is not None:
        m["base_rss"] = figure(args.base_rss_mib * MIB, "bytes", "--base-rss-mib (given)")
    elif idle and s.get("server_rss_bytes") and s.get("connections"):
        n = len(idle[1]["urls"])
        base = (s["server_rss_bytes"] - s["rss_per_connection_bytes"] * s["connections"]) / n
        m["base_rss"] = figure(max(base, 0.0), "bytes",
                               f"{idle[0]} (peak RSS per instance less its connections' share)")
    else:
        raise CapacityError(f"{result_dir}: no idle run with the servers' RSS: pass --base-rss-mib")


def _measure_redis(m, runs, result_dir, args):
    cands = redis_candidates(runs)
    if args.redis_us_per_subscription is not None:
        m["redis"] = figure(args.redis_us_per_subscription, "µs per comment per subscribed instance",
                            "--redis-us-per-subscription (given)")
        m["redis"]["all_per_comment_us"] = None
    elif cands:
        # The run with the most comment deliveries to instances: Redis's fixed work (cluster
        # bus, cron, viewer reports) weighs least there.
        n, d, cpu, acc, per, us = max(cands, key=lambda c: (c[3] * c[4], c[0]))
        m["redis"] = figure(us, "µs per comment per subscribed instance",
                            f"{n} ({describe(d)}): {cpu:g} s of Redis CPU / ({acc:,} comments × {per:.2f} instances)")
        m["redis"]["all_per_comment_us"] = us * per
    else:
        raise CapacityError(f"{result_dir}: no fan-out run on Redis with its CPU sampled (other_cpu_s): "
                            "pass --redis-us-per-subscription")
    m["redis"]["all_runs"] = [{"run": c[0], "us": c[5]} for c in cands]


# --- the model -------------------------------------------------------------------------------


def expected_pods(pods, viewers):
    """Pods a stream with `viewers` viewers is on, on average, when each viewer lands on one
    of `pods` pods independently and evenly: P·(1 − (1 − 1/P)^v)."""
    if pods <= 1:
        return float(min(pods, 1)) if viewers > 0 else 0.0
    return pods * (1.0 - (1.0 - 1.0 / pods) ** viewers)


def zipf_weights(n, s):
    """Popularity of n streams, Zipf with exponent s: w_i = i^-s / Σ_j j^-s (they sum to 1)."""
    raw = [1.0 / (i ** s) for i in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def assumptions(args):
    """The planning assumptions: the options, or the chart's values and the defaults."""
    chart = chart_settings(args.chart)
    a = {"chart": chart}
    a["pod_cpu"] = args.pod_cpu if args.pod_cpu is not None else chart["cpu_limit"]
    a["cpu_target"] = (args.cpu_target if args.cpu_target is not None
                       else round(chart["ready_threshold"] - 0.1, 4))
    a["pod_memory"] = args.pod_memory_gib * GIB if args.pod_memory_gib is not None else chart["memory_limit"]
    a["memory_target"] = args.memory_target
    if args.max_connections is not None:
        a["max_connections"], a["max_connections_source"] = args.max_connections, "--max-connections (given)"
    elif chart["max_connections"] > 0:
        a["max_connections"], a["max_connections_source"] = chart["max_connections"], "the chart's DANMAKU_MAX_CONNECTIONS"
    else:
        a["max_connections"] = fd_budget(args.nofile)
        a["max_connections_source"] = (f"the chart's DANMAKU_MAX_CONNECTIONS=0: the open-file limit "
                                       f"({args.nofile:,}, --nofile) less 5 % headroom")
    for key in ("redis_shard_budget", "redis_min_shards", "price_vcpu_hour", "price_gib_hour",
                "price_egress_gb", "price_redis_shard_hour", "hours_per_month",
                "viewer_max_rate", "pod_us_per_message", "redis_us_per_comment"):
        a[key] = getattr(args, key)
    for key, bad in (("pod_cpu", a["pod_cpu"] <= 0), ("cpu_target", not 0 < a["cpu_target"] <= 1),
                     ("memory_target", not 0 < a["memory_target"] <= 1),
                     ("max_connections", a["max_connections"] <= 0),
                     ("redis_shard_budget", not 0 < a["redis_shard_budget"] <= 1)):
        if bad:
            raise CapacityError(f"{key.replace('_', '-')}: out of range ({a[key]})")
    return a


def size_pods(cores, connections, m, a):
    """Pods needed for `cores` of CPU and `connections` WebSockets: the most of the CPU,
    memory and connection bounds, and which one binds."""
    cpu_per_pod = a["cpu_target"] * a["pod_cpu"]
    room = a["pod_memory"] * a["memory_target"] - m["base_rss"]["value"]
    if room <= 0:
        raise CapacityError(
            f"the pod's memory budget ({a['pod_memory'] * a['memory_target'] / MIB:.1f} MiB) is below "
            f"its base RSS ({m['base_rss']['value'] / MIB:.1f} MiB): no room for a connection")
    memory = connections * m["rss_conn"]["value"]
    bounds = {
        "cpu": math.ceil(cores / cpu_per_pod - 1e-9),
        "memory": math.ceil(memory / room - 1e-9),
        "connections": math.ceil(connections / a["max_connections"] - 1e-9),
    }
    binds = max(bounds, key=lambda k: bounds[k])  # ties: cpu, then memory, then connections
    return {"pods": max(1, bounds[binds]), "bounds": bounds, "binds": binds, "cores": cores,
            "memory_bytes": memory + m["base_rss"]["value"] * max(1, bounds[binds]),
            "connections": connections, "cpu_per_pod": cpu_per_pod,
            "connections_per_pod_by_memory": room / m["rss_conn"]["value"]}


def costs(pods, shards, deliveries_per_s, m, a):
    """Hourly and monthly cost: pods billed at their CPU and memory limits, Redis shards, and
    egress."""
    pod_hour = a["pod_cpu"] * a["price_vcpu_hour"] + a["pod_memory"] / GIB * a["price_gib_hour"]
    egress_gb_hour = deliveries_per_s * m["bytes"]["value"] * 3600 / 1e9
    hourly = {"pods": pods * pod_hour, "redis": shards * a["price_redis_shard_hour"],
              "egress": egress_gb_hour * a["price_egress_gb"]}
    hourly["total"] = sum(hourly.values())
    return {"hourly": hourly, "monthly": {k: v * a["hours_per_month"] for k, v in hourly.items()},
            "egress_gb_per_hour": egress_gb_hour}


def thinned(rate, cap):
    return min(rate, cap) if cap and cap > 0 else rate


def _all_per_comment(m, comments):
    """Redis CPU if all of the measured Redis work were per comment, none per subscribed
    instance (the other extreme of the attribution); None when the figure was given."""
    us = m["redis"].get("all_per_comment_us")
    return None if us is None else comments * us * 1e-6


def plan_single(m, a, viewers, rate):
    """Plan (a): one stream, `viewers` viewers, `rate` comments/s."""
    c_d = m["cpu_hot"]["value"] * 1e-6  # core-seconds per delivery
    idle = m["idle_cpu"]["value"] * 1e-6  # cores per connection
    r_sub, r_comment = m["redis"]["value"] * 1e-6, a["redis_us_per_comment"] * 1e-6
    deliveries = thinned(rate, a["viewer_max_rate"]) * viewers
    sized = size_pods(deliveries * c_d + viewers * idle, viewers, m, a)
    pods = sized["pods"]
    subscribed = expected_pods(pods, viewers)
    messages = rate * subscribed
    shard_cpu = rate * r_comment + messages * r_sub
    # The stream's one shard reaches its budget at this many subscribed pods, i.e. viewers:
    pods_at_budget = max(0.0, a["redis_shard_budget"] - rate * r_comment) / (rate * r_sub)
    viewers_at_budget = pods_at_budget * sized["cpu_per_pod"] / (thinned(rate, a["viewer_max_rate"]) * c_d + idle)
    shards = max(1, a["redis_min_shards"])
    plan = {
        "viewers": viewers, "rate": rate, "deliveries_per_s": deliveries, "sizing": sized,
        "pods": pods, "subscribed_pods": subscribed, "redis_messages_per_s": messages,
        "shard_cpu": shard_cpu, "shard_fits": shard_cpu <= a["redis_shard_budget"],
        "shard_under_one_core": shard_cpu <= 1.0,
        "shard_cpu_if_per_comment": _all_per_comment(m, rate),
        "pods_at_shard_budget": pods_at_budget, "viewers_at_shard_budget": viewers_at_budget,
        "redis_shards": shards,
        "egress_gbit_s": deliveries * m["bytes"]["value"] * 8 / 1e9,
        "egress_gbit_s_per_pod": deliveries * m["bytes"]["value"] * 8 / 1e9 / pods,
        "costs": costs(pods, shards, deliveries, m, a),
    }
    plan["what_if"] = _what_if_single(m, a, viewers, rate, plan)
    return plan


def _what_if_single(m, a, viewers, rate, plan):
    """Plan (a) under the chart's viewer budget, and with CPU following frames."""
    out = {}
    cap = a["chart"]["viewer_max_rate"]
    if cap > 0 and cap < rate and not a["viewer_max_rate"]:
        d = cap * viewers
        s = size_pods(d * m["cpu_hot"]["value"] * 1e-6 + viewers * m["idle_cpu"]["value"] * 1e-6,
                      viewers, m, a)
        out["viewer_budget"] = {"max_rate": cap, "deliveries_per_s": d,
                                "cut": 1 - d / plan["deliveries_per_s"], "pods_if_cpu_per_delivery": s["pods"],
                                "egress_gbit_s": d * m["bytes"]["value"] * 8 / 1e9}
    cpf = m["cpu_hot"].get("comments_per_frame")
    window = a["chart"]["coalesce_ms"]
    if cpf and window > 0:
        per_frame_now = max(1.0, rate * window / 1000.0)
        ms = m["cpu_hot"]["value"] * cpf / per_frame_now
        d = plan["deliveries_per_s"]
        s = size_pods(d * ms * 1e-6 + viewers * m["idle_cpu"]["value"] * 1e-6, viewers, m, a)
        out["frames"] = {"run_comments_per_frame": cpf, "window_ms": window,
                         "comments_per_frame": per_frame_now, "cpu_ms_per_1k": ms, "pods": s["pods"]}
    return out


def plan_zipf(m, a, streams, viewers, s, per_viewer, cap):
    """Plan (b): `streams` streams, `viewers` viewers in all by Zipf(s) popularity, each
    stream's rate min(cap, per_viewer × its viewers). Pods and the pods each stream is on
    depend on each other (a pod's CPU for the Redis messages it receives, if
    --pod-us-per-message is set): iterated from the CPU bound to a fixed point."""
    w = zipf_weights(streams, s)
    v = [viewers * x for x in w]
    rates = [min(cap, per_viewer * x) for x in v]
    deliveries = sum(thinned(r, a["viewer_max_rate"]) * x for r, x in zip(rates, v))
    comments = sum(rates)
    base_cores = deliveries * m["cpu_zipf"]["value"] * 1e-6 + viewers * m["idle_cpu"]["value"] * 1e-6
    per_msg = a["pod_us_per_message"] * 1e-6
    if comments * per_msg >= a["cpu_target"] * a["pod_cpu"]:
        raise CapacityError("--pod-us-per-message: a pod on every stream would spend its whole CPU "
                            "budget receiving messages; no pod count is enough")
    sized = size_pods(base_cores, viewers, m, a)
    steps = 0
    while True:
        steps += 1
        pods_i = [expected_pods(sized["pods"], x) for x in v]
        messages = sum(r * p for r, p in zip(rates, pods_i))
        again = size_pods(base_cores + messages * per_msg, viewers, m, a)
        if again["pods"] == sized["pods"] or steps >= 1000:
            sized = again
            break
        sized = again
    pods = sized["pods"]
    r_sub, r_comment = m["redis"]["value"] * 1e-6, a["redis_us_per_comment"] * 1e-6
    redis_cpu = comments * r_comment + messages * r_sub
    shards = max(a["redis_min_shards"], math.ceil(redis_cpu / a["redis_shard_budget"] - 1e-9))
    hottest = max(range(streams), key=lambda i: rates[i] * pods_i[i])
    hottest_cpu = rates[hottest] * (r_comment + pods_i[hottest] * r_sub)
    plan = {
        "streams": streams, "viewers": viewers, "zipf_s": s, "comments_per_viewer_s": per_viewer,
        "rate_cap": cap, "comments_per_s": comments, "deliveries_per_s": deliveries,
        "streams_at_cap": sum(1 for r in rates if r >= cap),
        "top_stream_viewers": v[0], "sizing": sized, "pods": pods, "fixed_point_steps": steps,
        "subscriptions": sum(pods_i), "redis_messages_per_s": messages, "redis_cpu": redis_cpu,
        "redis_shards_by_cpu": math.ceil(redis_cpu / a["redis_shard_budget"] - 1e-9),
        "redis_shards": shards,
        "hottest_stream_shard_cpu": hottest_cpu,
        "redis_cpu_if_per_comment": _all_per_comment(m, comments),
        "egress_gbit_s": deliveries * m["bytes"]["value"] * 8 / 1e9,
        "egress_gbit_s_per_pod": deliveries * m["bytes"]["value"] * 8 / 1e9 / pods,
        "costs": costs(pods, shards, deliveries, m, a),
    }
    cap_v = a["chart"]["viewer_max_rate"]
    if cap_v > 0 and not a["viewer_max_rate"] and max(rates) > cap_v:
        d = sum(min(r, cap_v) * x for r, x in zip(rates, v))
        plan["viewer_budget"] = {"max_rate": cap_v, "deliveries_per_s": d, "cut": 1 - d / deliveries}
    return plan


def build(result_dir, args):
    """Everything bench/capacity prints: inputs, assumptions, both plans."""
    m = measure(result_dir, args)
    a = assumptions(args)
    return {
        "result_dir": str(result_dir),
        "inputs": m,
        "assumptions": a,
        "plans": {
            "a": plan_single(m, a, args.a_viewers, args.a_rate),
            "b": plan_zipf(m, a, args.b_streams, args.b_viewers, args.b_zipf,
                           args.b_comments_per_viewer, args.rate_cap),
        },
    }


# --- options ---------------------------------------------------------------------------------


def parser():
    p = argparse.ArgumentParser(
        prog="bench/capacity",
        description="A capacity plan from a bench/compare result directory (docs/capacity.md).")
    p.add_argument("result_dir", help="a bench/compare result directory, e.g. bench/results/compare-2026-12-01-e1f64f7")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    g = p.add_argument_group("measured figures (override what the result directory gives)")
    g.add_argument("--cpu-ms-per-1k-hot", type=float, help="server CPU ms per 1k deliveries, one hot stream (plan a)")
    g.add_argument("--cpu-ms-per-1k-zipf", type=float, help="server CPU ms per 1k deliveries, Zipf streams (plan b)")
    g.add_argument("--rss-per-connection-bytes", type=float, help="RSS per idle connection, bytes")
    g.add_argument("--idle-cpu-us-per-connection", type=float, help="CPU per idle connection, µs per second")
    g.add_argument("--base-rss-mib", type=float, help="RSS of a pod with no connection, MiB")
    g.add_argument("--redis-us-per-subscription", type=float,
                   help="Redis CPU µs per comment per subscribed instance")
    g.add_argument("--bytes-per-delivery", type=float,
                   help="wire bytes per delivery (required when no run counted them)")
    g = p.add_argument_group("pods (defaults from charts/danmaku/values.yaml)")
    g.add_argument("--chart", default=str(CHART), help="the chart's values.yaml")
    g.add_argument("--pod-cpu", type=float, help="pod CPU limit, cores (chart: resources.limits.cpu)")
    g.add_argument("--cpu-target", type=float,
                   help="fraction of the CPU limit a pod is planned to use (default: the chart's "
                        "DANMAKU_CPU_READY_THRESHOLD less 0.1)")
    g.add_argument("--pod-memory-gib", type=float, help="pod memory limit, GiB (chart: resources.limits.memory)")
    g.add_argument("--memory-target", type=float, default=0.8,
                   help="fraction of the memory limit a pod is planned to use (default 0.8)")
    g.add_argument("--max-connections", type=int,
                   help="WebSockets per pod (default: the chart's DANMAKU_MAX_CONNECTIONS, or the "
                        "open-file limit's budget when it is 0)")
    g.add_argument("--nofile", type=int, default=1048576,
                   help="the container's open-file limit (default 1048576, containerd's and Docker's usual)")
    g.add_argument("--pod-us-per-message", type=float, default=0.0,
                   help="plan (b): pod CPU µs per Redis message a pod receives, beside CPU per delivery "
                        "(default 0: inside the measured CPU per delivery)")
    g.add_argument("--viewer-max-rate", type=float, default=0.0,
                   help="thin each viewer to this many comments/s (default 0: no thinning)")
    g = p.add_argument_group("Redis")
    g.add_argument("--redis-us-per-comment", type=float, default=0.0,
                   help="Redis CPU µs per comment, beside the per-subscription term (default 0: all "
                        "of Redis's work is counted per subscribed instance)")
    g.add_argument("--redis-shard-budget", type=float, default=0.5,
                   help="CPU one master may use, cores of its single command thread (default 0.5)")
    g.add_argument("--redis-min-shards", type=int, default=3,
                   help="masters at the least (default 3, Redis Cluster's minimum)")
    g = p.add_argument_group("prices (assumptions, not quotes)")
    g.add_argument("--price-vcpu-hour", type=float, default=PRICE_VCPU_HOUR)
    g.add_argument("--price-gib-hour", type=float, default=PRICE_GIB_HOUR)
    g.add_argument("--price-egress-gb", type=float, default=PRICE_EGRESS_GB)
    g.add_argument("--price-redis-shard-hour", type=float, default=PRICE_REDIS_SHARD_HOUR,
                   help="one master and its replica, per hour")
    g.add_argument("--hours-per-month", type=float, default=HOURS_PER_MONTH,
                   help="hours a month at this load (default 730: all month)")
    g = p.add_argument_group("plan (a): one stream")
    g.add_argument("--a-viewers", type=int, default=1_000_000)
    g.add_argument("--a-rate", type=float, default=50.0, help="comments/s (default 50)")
    g = p.add_argument_group("plan (b): many streams, Zipf popularity")
    g.add_argument("--b-streams", type=int, default=100_000)
    g.add_argument("--b-viewers", type=int, default=1_000_000)
    g.add_argument("--b-zipf", type=float, default=1.0, help="Zipf exponent s (default 1)")
    g.add_argument("--b-comments-per-viewer", type=float, default=0.01,
                   help="comments/s per viewer of a stream (default 0.01)")
    g.add_argument("--rate-cap", type=float, default=50.0, help="most comments/s of one stream (default 50)")
    return p


def parse_args(argv):
    args = parser().parse_args(argv)
    positive = ("a_viewers", "a_rate", "b_streams", "b_viewers", "b_comments_per_viewer", "rate_cap",
                "nofile", "hours_per_month", "redis_min_shards")
    for name in positive:
        if getattr(args, name) <= 0:
            raise CapacityError(f"--{name.replace('_', '-')} must be above 0")
    for name in ("cpu_ms_per_1k_hot", "cpu_ms_per_1k_zipf", "rss_per_connection_bytes",
                 "bytes_per_delivery", "redis_us_per_subscription"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise CapacityError(f"--{name.replace('_', '-')} must be above 0")
    for name in ("idle_cpu_us_per_connection", "base_rss_mib", "pod_us_per_message", "viewer_max_rate",
                 "redis_us_per_comment",
                 "price_vcpu_hour", "price_gib_hour", "price_egress_gb", "price_redis_shard_hour"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise CapacityError(f"--{name.replace('_', '-')} must be 0 or more")
    return args


# --- output ----------------------------------------------------------------------------------


def _n(x, digits=0):
    return f"{x:,.{digits}f}"


def _sig(x):
    """Two or three significant figures, for needs and costs of any size."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return _n(x)
    if abs(x) >= 1:
        return _n(x, 2 if abs(x) < 10 else 1)
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.3f}"


def _table(rows):
    head = ("resource", "need", "unit", "binds", "$/month")
    cells = [head] + [(r["resource"], r["need_text"], r["unit"], r["binds"],
                       "" if r["monthly_cost"] is None else _n(r["monthly_cost"])) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for c in cells:
        parts = [c[i].rjust(widths[i]) if i in (1, 4) else c[i].ljust(widths[i]) for i in range(len(head))]
        lines.append("  " + "  ".join(parts).rstrip())
    return lines


def _row(resource, need, unit, binds="", monthly=None, text=None):
    return {"resource": resource, "need": need, "need_text": _sig(need) if text is None else text, "unit": unit,
            "binds": binds, "monthly_cost": monthly}


BINDS = {"cpu": "CPU", "memory": "memory", "connections": "connections"}


def _pod_rows(plan, a):
    s = plan["sizing"]
    b = s["bounds"]

    def mark(k):
        return f"{b[k]:,} pods" + ("  <- binds first" if s["binds"] == k else "")

    pod_unit = f"pods ({a['pod_cpu']:g} CPU, {a['pod_memory'] / GIB:g} GiB)"
    return [
        _row("pod CPU", s["cores"], f"cores (at {s['cpu_per_pod']:g} a pod)", mark("cpu")),
        _row("pod memory", s["memory_bytes"] / GIB, "GiB RSS, all pods", mark("memory")),
        _row("pod connections", s["connections"], f"WebSockets (≤ {a['max_connections']:,} a pod)",
             mark("connections"), text=_n(s["connections"])),
        _row("pods", plan["pods"], pod_unit, BINDS[s["binds"]], plan["costs"]["monthly"]["pods"], text=_n(plan["pods"])),
    ]


def rows_single(plan, a):
    c = plan["costs"]["monthly"]
    shard = ("fits its budget" if plan["shard_fits"]
             else "over its budget, under one core" if plan["shard_under_one_core"]
             else "over one core: cannot carry it")
    rows = _pod_rows(plan, a)
    rows += [
        _row("Redis: the stream's shard", plan["shard_cpu"],
             f"cores of one master (budget {a['redis_shard_budget']:g})", shard),
        _row("Redis shards", plan["redis_shards"], "masters (+ replica)",
             f"cluster minimum ({a['redis_min_shards']})", c["redis"], text=_n(plan["redis_shards"])),
        _row("egress", plan["egress_gbit_s"], "Gbit/s", "", c["egress"]),
        _row("total", 0, "", "", c["total"], text=""),
    ]
    return rows


def rows_zipf(plan, a):
    c = plan["costs"]["monthly"]
    rows = _pod_rows(plan, a)
    by_cpu = plan["redis_shards_by_cpu"]
    rows += [
        _row("subscriptions", plan["subscriptions"], "(stream, pod) pairs", "", text=_n(plan["subscriptions"])),
        _row("Redis messages", plan["redis_messages_per_s"], "per s (to pods)", "",
             text=_n(plan["redis_messages_per_s"])),
        _row("Redis CPU", plan["redis_cpu"], f"cores (all masters; {a['redis_shard_budget']:g} a shard)",
             f"{by_cpu:,} shards"),
        _row("Redis shards", plan["redis_shards"], "masters (+ replica)",
             "CPU" if by_cpu >= a["redis_min_shards"] else f"cluster minimum ({a['redis_min_shards']})",
             c["redis"], text=_n(plan["redis_shards"])),
        _row("egress", plan["egress_gbit_s"], "Gbit/s", "", c["egress"]),
        _row("total", 0, "", "", c["total"], text=""),
    ]
    return rows


INPUT_LABELS = (
    ("cpu_hot", "CPU per delivery, one hot stream (a)"),
    ("cpu_zipf", "CPU per delivery, Zipf streams (b)"),
    ("rss_conn", "memory per connection"),
    ("base_rss", "memory of a pod with no connection"),
    ("idle_cpu", "CPU per idle connection"),
    ("redis", "Redis CPU per comment per subscribed instance"),
    ("bytes", "bytes per delivery"),
)


def _input_value(key, f):
    if key in ("rss_conn",):
        return f"{f['value'] / 1024:.2f} KiB"
    if key == "base_rss":
        return f"{f['value'] / MIB:.1f} MiB"
    if key == "idle_cpu":
        return f"{f['value']:.2f} µs per s"
    if key == "redis":
        return f"{f['value']:.1f} µs"
    if key == "bytes":
        return f"{f['value']:.1f} bytes"
    return f"{f['value']:.3f} ms per 1k deliveries"


def render_inputs(m, a):
    out = ["Measured (the run each figure came from):"]
    for key, label in INPUT_LABELS:
        f = m[key]
        extra = ""
        if key == "cpu_hot" and f.get("comments_per_frame"):
            extra = f"; {f['comments_per_frame']:.2f} comments a frame"
        out.append(f"  {label}: {_input_value(key, f)}")
        out.append(f"      from {f['source']}{extra}")
        others = [f"{r['us']:.0f} µs ({r['run'].split('-danmaku-')[0]})" for r in f.get("all_runs", [])]
        if key == "redis" and len(others) > 1:
            out.append(f"      every fan-out run on Redis: {', '.join(others)}; all of Redis's work is "
                       "counted per subscribed instance (an upper bound)")
    ch = a["chart"]
    out += [
        "",
        "Assumptions (options to change them in brackets):",
        f"  pod: {a['pod_cpu']:g} CPU, {a['pod_memory'] / GIB:g} GiB (the chart's limits) [--pod-cpu, --pod-memory-gib]",
        f"  CPU planned per pod: {a['cpu_target']:g} of its limit, below the readiness gate "
        f"DANMAKU_CPU_READY_THRESHOLD={ch['ready_threshold']:g} [--cpu-target]",
        f"  memory planned per pod: {a['memory_target']:g} of its limit [--memory-target]",
        f"  connections per pod: {a['max_connections']:,} ({a['max_connections_source']}) [--max-connections]",
        f"  Redis: {a['redis_shard_budget']:g} core per master (of its one command thread), "
        f"at least {a['redis_min_shards']} masters [--redis-shard-budget, --redis-min-shards]",
        f"  viewer budget: {'none' if not a['viewer_max_rate'] else _n(a['viewer_max_rate']) + ' comments/s'} "
        f"(the chart's DANMAKU_VIEWER_MAX_RATE is {ch['viewer_max_rate']:g}) [--viewer-max-rate]",
        f"  prices (assumed round numbers, not quotes): ${a['price_vcpu_hour']:g} per vCPU-hour, "
        f"${a['price_gib_hour']:g} per GiB-hour (pods billed at their limits), "
        f"${a['price_egress_gb']:g} per GB of egress, ${a['price_redis_shard_hour']:g} per Redis "
        f"shard-hour (master + replica); {a['hours_per_month']:g} hours a month at this load [--price-*, --hours-per-month]",
    ]
    return out


def _per_comment_term(comments, a):
    us = a["redis_us_per_comment"]
    return f" + {_n(comments)} comments/s × {us:g} µs" if us else ""


def _extreme(cpu, unit, digits):
    if cpu is None:
        return ""
    return (f" With all of the measured Redis work counted per comment instead, none per "
            f"subscribed pod (the other extreme): {cpu:.{digits}f} {unit}.")


def render_single(plan, m, a):
    out = [f"Plan (a): one stream, {_n(plan['viewers'])} viewers, {plan['rate']:g} comments/s: "
           f"{_n(plan['deliveries_per_s'])} deliveries/s"
           + ("" if a["viewer_max_rate"] else " (no thinning)")]
    out += _table(rows_single(plan, a))
    pods = plan["pods"]
    out += [
        f"  - {BINDS[plan['sizing']['binds']]} binds first: {pods:,} pods; each sends "
        f"{plan['egress_gbit_s_per_pod']:.2f} Gbit/s.",
        f"  - Redis: the stream is one shard channel (one slot, one master), so more shards do not "
        f"help it. {plan['rate']:g} comments/s × {plan['subscribed_pods']:.0f} subscribed pods = "
        f"{_n(plan['redis_messages_per_s'])} messages/s × {m['redis']['value']:.1f} µs"
        + _per_comment_term(plan["rate"], a) + f" = {plan['shard_cpu']:.2f} core: "
        + ("within" if plan["shard_fits"] else "over") + f" the {a['redis_shard_budget']:g}-core budget"
        + ("" if plan["shard_under_one_core"] else ", and over the one core a master has") + ".",
        f"    The shard reaches its budget at {_n(plan['pods_at_shard_budget'])} subscribed pods "
        f"(~{_n(round(plan['viewers_at_shard_budget'], -3))} viewers at this rate)."
        + _extreme(plan["shard_cpu_if_per_comment"], "core", 3),
    ]
    w = plan["what_if"]
    if "viewer_budget" in w:
        t = w["viewer_budget"]
        out.append(f"  - With the chart's DANMAKU_VIEWER_MAX_RATE={t['max_rate']:g}: {_n(t['deliveries_per_s'])} "
                   f"deliveries/s ({t['cut']:.0%} fewer), {t['egress_gbit_s']:.1f} Gbit/s, "
                   f"{t['pods_if_cpu_per_delivery']:,} pods if CPU followed deliveries (it follows frames more: "
                   "a thinned viewer still gets a frame per pass).")
    if "frames" in w:
        f = w["frames"]
        out.append(f"  - The hot run carried {f['run_comments_per_frame']:.2f} comments a frame; a pod whose passes "
                   f"keep up sends one per {f['window_ms']:g} ms window, {f['comments_per_frame']:.1f} comments "
                   f"a frame at {plan['rate']:g} c/s. If CPU follows frames: {f['cpu_ms_per_1k']:.2f} ms per 1k "
                   f"deliveries, {f['pods']:,} pods.")
    return out


def render_zipf(plan, m, a):
    out = [f"Plan (b): {_n(plan['streams'])} streams, {_n(plan['viewers'])} viewers (Zipf s={plan['zipf_s']:g}), "
           f"min({plan['rate_cap']:g}, {plan['comments_per_viewer_s']:g} × viewers) comments/s a stream: "
           f"{_n(plan['comments_per_s'])} comments/s, {_n(plan['deliveries_per_s'])} deliveries/s"]
    out += _table(rows_zipf(plan, a))
    out += [
        f"  - {BINDS[plan['sizing']['binds']]} binds first: {plan['pods']:,} pods (fixed point after "
        f"{plan['fixed_point_steps']} step{'s' if plan['fixed_point_steps'] != 1 else ''}); each sends "
        f"{plan['egress_gbit_s_per_pod']:.2f} Gbit/s. The top stream has {_n(plan['top_stream_viewers'])} "
        f"viewers; {plan['streams_at_cap']:,} streams are at {plan['rate_cap']:g} comments/s.",
        f"  - Redis: {_n(plan['redis_messages_per_s'])} messages/s to pods × {m['redis']['value']:.1f} µs"
        + _per_comment_term(plan["comments_per_s"], a) + f" = {plan['redis_cpu']:.2f} cores over "
        f"{plan['redis_shards']:,} masters (streams hashed evenly over slots). The hottest stream alone "
        f"takes {plan['hottest_stream_shard_cpu']:.2f} core of its master's {a['redis_shard_budget']:g}."
        + _extreme(plan["redis_cpu_if_per_comment"], "cores", 2),
    ]
    if "viewer_budget" in plan:
        t = plan["viewer_budget"]
        out.append(f"  - With the chart's DANMAKU_VIEWER_MAX_RATE={t['max_rate']:g}: {_n(t['deliveries_per_s'])} "
                   f"deliveries/s ({t['cut']:.0%} fewer; only streams above {t['max_rate']:g} c/s are thinned).")
    return out


def render_text(result):
    m, a, plans = result["inputs"], result["assumptions"], result["plans"]
    ch = a["chart"]
    out = [f"danmaku capacity plan from {result['result_dir']}", ""]
    out += render_inputs(m, a)
    out += [""] + render_single(plans["a"], m, a) + [""] + render_zipf(plans["b"], m, a)
    hpa_core = ch["hpa_target_pct"] / 100 * ch["cpu_request"]
    most = max(plans["a"]["pods"], plans["b"]["pods"])
    out += ["", "The chart as shipped:",
            f"  - its HPA targets {ch['hpa_target_pct']:g} % of the {ch['cpu_request']:g}-core request "
            f"({hpa_core:g} core a pod), not {a['cpu_target'] * a['pod_cpu']:g}: it would run "
            f"{a['cpu_target'] * a['pod_cpu'] / hpa_core:.1f}× the pods planned here."]
    if ch["max_replicas"] < most:
        out.append(f"  - autoscaling.maxReplicas is {ch['max_replicas']}: the plans need up to {most:,} pods.")
    return "\n".join(out)


def render_json(result):
    return json.dumps(result, indent=2, ensure_ascii=False, sort_keys=False)
