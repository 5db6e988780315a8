#!/usr/bin/python3
"""Every dashboard panel query and every rule expression, evaluated by a real Prometheus
that scrapes a real danmaku under real traffic (scripts/test-observability starts both).

1. Waits for Prometheus's first scrape of danmaku, then drives traffic (load.traffic).
2. Makes the instance not ready for every reason readiness has: its connection cap is
   reached (`full`), its Redis is stopped (`broker`), it gets SIGTERM (`draining`); its CPU
   gate is closed throughout (a threshold of 0.0001, set by the caller: `cpu`). Waits until
   a scrape carries all four, and until the server's rules have raised the alerts this
   state must raise (pending or firing).
3. Evaluates, at one instant, through /api/v1/query:
   - every target of every panel of dashboards/*.json, the dashboard's variables filled in:
     query variables (`label_values(selector, label)`) with the value of that label the
     scrape carries (each must be among that variable query's own answers), custom ones
     with their current value, and Grafana's built-ins as Grafana fills them for a
     Prometheus data source with its default 15 s scrape interval ($__interval 15s,
     $__rate_interval 1m = 4 x 15 s, $__range 5m);
   - every rule the server loaded from rules/*.yaml (read back from /api/v1/rules, which
     also must report each one healthy and evaluated), and every series a rule records.
   Each must return data: a non-empty result with a value that is a number (NaN, a ratio of
   two zero rates, counts as no data). Expressions whose top level is a comparison or a set
   operation (alerts' `x > 0.01`, `a and b`), legitimately empty while healthy, are checked
   by their sides instead (promql.operands: both sides of `and`/`or`/`unless`, the
   non-literal sides of a comparison, recursively); dashboard queries get the same
   treatment. A query that returns no data fails the run, named by file and panel (or
   rule), with the selectors in it that have no series.
"""
import argparse
import asyncio
import json
import math
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402
import promql  # noqa: E402

BUILTINS = {"__interval": "15s", "__interval_ms": "15000", "__rate_interval": "1m",
            "__range": "5m", "__range_s": "300", "__range_ms": "300000"}
NOT_READY = {"draining", "broker", "cpu", "full"}
# What the not-ready state must raise: no instance ready, its broker down, its CPU gate shut.
EXPECTED_ALERTS = {"DanmakuNoReadyInstances", "DanmakuBrokerNotReady", "DanmakuCpuGateClosed"}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, **params):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{path} {params}: {e.code} {e.read().decode()[:300]}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr, at):
        """(has data, description) of expr evaluated at `at`."""
        try:
            data = self.get("/api/v1/query", query=expr, time=f"{at:.3f}")
        except RuntimeError as e:
            return False, str(e)
        if data["resultType"] == "scalar":
            values = [data["result"][1]]
        else:
            values = [s["value"][1] for s in data["result"]]
        if not values:
            return False, "empty result"
        if all(math.isnan(float(v)) for v in values):
            return False, f"only NaN ({len(values)} series: a ratio of two zero rates?)"
        return True, f"{len(values)} series"

    def wait(self, what, check, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                result = check()
            except (OSError, RuntimeError):  # not up yet (urllib's errors are OSErrors)
                result = None
            if result:
                return result
            if time.time() > deadline:
                raise SystemExit(f"FAIL: {what}: not within {timeout} s")
            time.sleep(0.25)


# --- what to evaluate -------------------------------------------------------------------------
def substitute(expr, variables):
    """expr with Grafana's $var and ${var} filled in (an unknown one is left for Prometheus
    to refuse, which names the panel)."""
    def value(m):
        return variables.get(m.group(1) or m.group(2), m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def regex_escape(value):
    """value as a regular expression inside a PromQL string (as Grafana escapes it)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def dashboard_variables(prom, path, dashboard, labels, at):
    """Grafana's built-ins and the dashboard's own variables, each checked against its query."""
    variables, problems = dict(BUILTINS), []
    for var in dashboard.get("templating", {}).get("list", []):
        name = var["name"]
        if var["type"] == "custom":
            variables[name] = str(var["current"]["value"])
        elif var["type"] == "query":
            definition = var.get("definition") or var["query"]["query"]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", definition, re.S)
            if not m or m.group(2) not in labels:
                problems.append(f"{path}: variable ${name}: cannot fill {definition!r}")
                continue
            selector, label = substitute(m.group(1), variables), m.group(2)
            answer = prom.get("/api/v1/query", query=f"group by ({label}) ({selector})",
                              time=f"{at:.3f}")["result"]
            seen = sorted(s["metric"].get(label, "") for s in answer)
            if labels[label] not in seen:
                problems.append(f"{path}: variable ${name} ({definition}) offers {seen}, "
                                f"not {labels[label]!r}")
            variables[name] = regex_escape(labels[label])
    return variables, problems


def dashboard_queries(path, dashboard, variables):
    """(where, expr) of every panel target, rows' nested panels included."""
    panels = list(dashboard.get("panels", []))
    panels += [q for p in panels for q in p.get("panels", [])]
    for panel in panels:
        for target in panel.get("targets", []):
            if target.get("expr", "").strip():
                where = f'{path}: panel "{panel.get("title")}" query {target.get("refId", "?")}'
                yield where, substitute(target["expr"], variables)


def rule_queries(prom, rule_files):
    """(category, where, expr) of every rule the server loaded and of every series a rule
    records, and the problems /api/v1/rules shows."""
    by_base = {os.path.basename(f): f for f in rule_files}
    queries, problems, loaded = [], [], {}
    for group in prom.get("/api/v1/rules")["groups"]:
        source = by_base.get(os.path.basename(group["file"]), group["file"])
        for rule in group["rules"]:
            loaded[source] = loaded.get(source, 0) + 1
            kind = "alert" if rule["type"] == "alerting" else "record"
            where = f"{source}: {kind} {rule['name']} (group {group['name']})"
            if rule["health"] != "ok" or rule.get("lastError"):
                problems.append(f"{where}: health {rule['health']}: {rule.get('lastError')}")
            if rule["lastEvaluation"].startswith("0001-"):
                problems.append(f"{where}: never evaluated by the server")
            queries.append((f"{source}: {kind} expressions", where, rule["query"]))
            if kind == "record":
                queries.append((f"{source}: recorded series", f"{source}: the series "
                                f"recorded by {rule['name']}", rule["name"]))
    for f in rule_files:
        written = len(re.findall(r"^\s*-\s*(?:record|alert):", open(f).read(), re.M))
        if loaded.get(f, 0) != written:
            problems.append(f"{f}: {written} rules written, {loaded.get(f, 0)} loaded")
    return queries, problems


def check(prom, expr, at):
    """(None if every operand of expr returns data, else why not; the number of sides it was
    checked by, 0 if it was checked whole)."""
    reasons = []
    parts = promql.operands(expr)
    for part in parts:
        ok, why = prom.query(part, at)
        if ok:
            continue
        empty = [s for s in promql.selectors(part) if not prom.query(s, at)[0]]
        side = f"its side `{' '.join(part.split())}`: " if len(parts) > 1 else ""
        detail = (f"no series for {', '.join(empty)}" if empty else
                  "every selector in it has series (a filter, a join or a rate over fewer "
                  "than two samples empties it)")
        reasons.append(f"{side}{why}; {detail}")
    by_sides = parts != [promql.unwrap(expr)]
    return "; ".join(reasons) or None, len(parts) if by_sides else 0


# --- the run ----------------------------------------------------------------------------------
async def drive(args, prom, d):
    prom.wait("Prometheus scraping danmaku", lambda: prom.get(
        "/api/v1/query", query='up{job="danmaku"} == 1')["result"], 20)
    log("traffic")
    await load.traffic(d, log)
    await load.fill_to_cap(d, log)
    log(f"stopping Redis (pid {args.redis_pid}), then SIGTERM to danmaku (pid {args.danmaku_pid})")
    os.kill(args.redis_pid, signal.SIGTERM)
    prom.wait("readiness reason broker", lambda: "broker" in d.request("GET", "/readyz")[1], 15)
    os.kill(args.danmaku_pid, signal.SIGTERM)

    def reasons():
        result = prom.get("/api/v1/query", query="danmaku_readiness_state_ratio == 0")["result"]
        seen = {s["metric"].get("reason") for s in result}
        return seen if NOT_READY <= seen else None
    seen = prom.wait(f"a scrape with readiness reasons {sorted(NOT_READY)}", reasons, 15)
    log(f"scraped: not ready for {sorted(seen)}")

    def alerts():
        active = {a["labels"]["alertname"]: a["state"] for a in prom.get("/api/v1/alerts")["alerts"]}
        return active if EXPECTED_ALERTS <= set(active) else None
    active = prom.wait(f"alerts {sorted(EXPECTED_ALERTS)} pending or firing", alerts, 15)
    log(f"alerts raised by the server: {active}")


async def run(args, labels, prom):
    d = load.Danmaku(args.danmaku, args.jwt_secret, args.service_token)
    try:
        await drive(args, prom, d)
        evaluate(args, labels, prom)
    finally:
        await d.close()


def evaluate(args, labels, prom):
    at = time.time()
    queries, problems = [], []
    for path in args.dashboards:
        dashboard = json.load(open(path))
        variables, bad = dashboard_variables(prom, path, dashboard, labels, at)
        problems += bad
        queries += [(f"{path}: panel queries", where, expr)
                    for where, expr in dashboard_queries(path, dashboard, variables)]
    rules, bad = rule_queries(prom, args.rules)
    problems += bad
    counts = {}  # category: [queries, of them checked by their sides, sides]
    for category, where, expr in queries + rules:
        why, sides = check(prom, expr, at)
        n = counts.setdefault(category, [0, 0, 0])
        n[0] += 1
        if sides:
            n[1], n[2] = n[1] + 1, n[2] + sides
        if why:
            problems.append(f"{where}: {why}\n    {' '.join(expr.split())}")
    for category, (n, split, sides) in counts.items():
        log(f"{category}: {n} evaluated" + (f" ({split} by their {sides} sides)" if split else ""))
    if problems:
        print("\n".join(f"FAIL {p}" for p in problems), file=sys.stderr)
        raise SystemExit(f"{len(problems)} problems above")
    log(f"all {sum(n for n, _, _ in counts.values())} queries returned data")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prometheus", required=True)
    p.add_argument("--danmaku", required=True)
    p.add_argument("--jwt-secret", required=True)
    p.add_argument("--service-token", required=True)
    p.add_argument("--redis-pid", type=int, required=True)
    p.add_argument("--danmaku-pid", type=int, required=True)
    p.add_argument("--label", action="append", default=[],
                   help="label=value the scrape carries (fills the dashboards' variables)")
    p.add_argument("--rules", nargs="+", required=True)
    p.add_argument("--dashboards", nargs="+", required=True)
    args = p.parse_args()
    labels = dict(kv.split("=", 1) for kv in args.label)

    asyncio.run(run(args, labels, Prometheus(args.prometheus)))


if __name__ == "__main__":
    main()
