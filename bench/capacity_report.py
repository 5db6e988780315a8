"""bench/capacity's options, and its plan as text or JSON."""

import argparse
import json

from capacity_inputs import (CHART, GIB, HOURS_PER_MONTH, MIB, PRICE_EGRESS_GB, PRICE_GIB_HOUR,
                             PRICE_REDIS_SHARD_HOUR, PRICE_VCPU_HOUR, CapacityError)


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
