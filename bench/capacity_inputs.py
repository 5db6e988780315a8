"""The inputs of bench/capacity's model: the Helm chart's pod limits and settings, and the
measured figures of a bench/compare result directory (danmaku's runs), each with the run it
came from. Standard library only (Debian's /usr/bin/python3). docs/capacity.md explains them.
"""

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
