"""The capacity model behind bench/capacity (docs/capacity.md explains it).

From the measured figures (capacity_inputs) and the chart's pod, it sizes two plans: (a) one
stream with many viewers, (b) many streams with Zipf popularity: pods (CPU, memory,
connections, and which binds), Redis, egress and their cost. Standard library only (Debian's
/usr/bin/python3); bench/capacity is the command line, capacity_report its options and
output; the tests in tests/capacity import all three.
"""

import math

from capacity_inputs import GIB, MIB, CapacityError, chart_settings, fd_budget, measure


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
