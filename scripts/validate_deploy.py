#!/usr/bin/env python3
"""Offline checks of danmaku's deployment manifests (called by scripts/test-deploy).

For every rendered chart case and for the plain manifests in istio/:
  * Kubernetes kinds: validated with kubernetes-validate (strict: unknown fields fail) against
    the Kubernetes version given by --k8s-version. CRD kinds are skipped there.
  * Istio kinds: `spec` validated against the OpenAPI v3 schema of the CRD with the same
    group/version/kind in --istio-crds (x-kubernetes-* keywords stripped; objects that list
    their properties made closed, as the API server's pruning would drop unknown fields; CEL
    duration rules replaced by a duration pattern).
  * Assertions on what danmaku needs (see check_* below), including a small evaluator of the
    VirtualService's HTTP matches that sends sample requests through it.

Usage: validate_deploy.py --k8s-version 1.33.0 --istio-crds PATH \
           --case NAME:ACTIVE_SLOT:FILE ... --istio-dir istio
Exits non-zero with one line per failure.
"""

import argparse
import copy
import math
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io")
CRD_KINDS = {("monitoring.coreos.com", "ServiceMonitor")}
SLOTS = ("blue", "green")
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


def check(cond, where, msg):
    if not cond:
        fail(where, msg)
    return cond


def group_of(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def duration_seconds(text):
    """A Go/protobuf duration ("3600s", "1h", "0s", "1m30s") in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    if not isinstance(text, str) or not DURATION.match(text):
        return float("nan")  # compares false: the caller's check fails
    return sum(float(n) * units[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text))


# === Istio CRD schemas ========================================================================

def openapi_to_jsonschema(node):
    """Strips Kubernetes extensions, closes objects that list properties, and turns the CEL
    rule `duration(self) >= duration('1ms')` (not checkable here) into a duration pattern."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        out[key] = openapi_to_jsonschema(value)
    rules = node.get("x-kubernetes-validations") or []
    if node.get("type") == "string" and any("duration(self)" in r.get("rule", "") for r in rules):
        out["pattern"] = DURATION.pattern
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_istio_schemas(path):
    schemas = {}
    for crd in load_docs(path):
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            props = version.get("schema", {}).get("openAPIV3Schema", {}).get("properties", {})
            if "spec" in props:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = openapi_to_jsonschema(copy.deepcopy(props["spec"]))
    return schemas


def validate_istio(doc, schemas, where):
    key = (doc.get("apiVersion"), doc.get("kind"))
    schema = schemas.get(key)
    if not check(schema is not None, where, f"no Istio CRD schema for {key}"):
        return
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc.get("spec", {})), key=lambda e: list(e.path)):
        path = "/".join(str(p) for p in err.path)
        fail(where, f"spec/{path}: {err.message}")


# === Kubernetes schemas =======================================================================

def validate_k8s(doc, version, where):
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        fail(where, f"{path}: {e.message}")
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        fail(where, f"no schema: {e}")


# === The VirtualService, evaluated ============================================================

def string_match(m, value):
    if value is None:
        return False
    if "exact" in m:
        return value == m["exact"]
    if "prefix" in m:
        return value.startswith(m["prefix"])
    if "regex" in m:
        # Envoy matches RE2 against the whole value; the patterns used here mean the same in re.
        return re.fullmatch(m["regex"], value) is not None
    raise ValueError(f"unsupported string match {m}")


def request_matches(match, headers, path):
    for name, m in (match.get("headers") or {}).items():
        if not string_match(m, headers.get(name)):
            return False
    if "uri" in match and not string_match(match["uri"], path):
        return False
    return True


def route_request(vs, headers, path="/v1/streams/s1/ws"):
    """The (route, destination) an Istio HTTP route table picks: the first route any of whose
    match entries holds (entries are ORed, conditions within an entry ANDed; no match: all)."""
    headers = {k.lower(): v for k, v in headers.items()}
    for route in vs["spec"].get("http", []):
        matches = route.get("match") or [{}]
        if any(request_matches(m, headers, path) for m in matches):
            return route, route["route"][0]["destination"]
    return None, None


def check_virtual_service(vs, dr, active, where):
    spec = vs["spec"]
    for route in spec.get("http", []):
        rname = f"{where} route {route.get('name')}"
        for m in route.get("match") or []:
            for h in (m.get("headers") or {}):
                check(h == h.lower(), rname, f"header name {h!r} must be lower-case")
        check(route.get("timeout") == "0s", rname, "WebSocket route needs timeout: 0s (hour-long streams)")
        check((route.get("retries") or {}).get("attempts") == 0, rname, "WebSocket route must not retry (retries.attempts: 0)")
        check(len(route.get("route", [])) == 1, rname, "one destination per route (no weighted split)")
        for dest in route.get("route", []):
            check(dest["destination"].get("host") == dr["spec"]["host"], rname,
                  f"destination host {dest['destination'].get('host')} is not the DestinationRule host {dr['spec']['host']}")
            check(dest["destination"].get("subset") in SLOTS, rname, "destination subset must be blue or green")
    cases = [
        ({"x-danmaku-slot": "green"}, "green", "header x-danmaku-slot: green"),
        ({"X-Danmaku-Slot": "green"}, "green", "header (any case in the request) x-danmaku-slot: green"),
        ({"cookie": "danmaku-slot=green"}, "green", "cookie alone"),
        ({"cookie": "a=1; danmaku-slot=green"}, "green", "cookie last among others"),
        ({"cookie": "a=1; danmaku-slot=green; b=2"}, "green", "cookie among others"),
        ({"cookie": "danmaku-slot=green;b=2"}, "green", "cookie first, no space"),
        ({"x-danmaku-slot": "blue", "cookie": "danmaku-slot=green"}, "blue", "header wins over cookie"),
        ({"x-danmaku-slot": "blue"}, "blue", "header blue"),
        ({"cookie": "danmaku-slot=blue"}, "blue", "cookie blue"),
        ({}, active, "no header, no cookie"),
        ({"x-danmaku-slot": "GREEN"}, active, "header value is exact (case-sensitive)"),
        ({"x-danmaku-slot": "purple"}, active, "unknown slot in header"),
        ({"cookie": "xdanmaku-slot=green"}, active, "a cookie whose name only ends in danmaku-slot"),
        ({"cookie": "danmaku-slot=greenish"}, active, "a cookie value that only starts with green"),
        ({"cookie": "a=danmaku-slot=green"}, active, "danmaku-slot=green inside another cookie's value"),
        ({"x-other": "green"}, active, "another header"),
    ]
    for headers, want, what in cases:
        for path in ("/v1/streams/s1/ws", "/v1/streams/s1/comments"):
            route, dest = route_request(vs, headers, path)
            got = dest.get("subset") if dest else None
            check(got == want, where, f"{what} {headers} on {path}: routed to {got}, want {want}")
    # The default route is last and unconditional.
    last = spec["http"][-1]
    check(not last.get("match"), where, "the last route must be the unconditional default")
    check(last["route"][0]["destination"].get("subset") == active, where, f"default route goes to {active}")


def check_destination_rule(dr, where):
    spec = dr["spec"]
    subsets = {s["name"]: s.get("labels") for s in spec.get("subsets", [])}
    for slot in SLOTS:
        check(subsets.get(slot) == {"slot": slot}, where, f"subset {slot} must select exactly slot={slot}, got {subsets.get(slot)}")
    tp = spec.get("trafficPolicy", {})
    lb = tp.get("loadBalancer", {})
    warm = lb.get("warmupDurationSecs") or (lb.get("warmup") or {}).get("duration")
    if check(warm is not None, where, "trafficPolicy.loadBalancer needs warmupDurationSecs (slow start)"):
        check(duration_seconds(warm) >= 10, where, f"warmup {warm} is too short to matter")
    check(lb.get("simple") in ("ROUND_ROBIN", "LEAST_REQUEST"), where, "slow start needs ROUND_ROBIN or LEAST_REQUEST")
    http = tp.get("connectionPool", {}).get("http", {})
    idle = http.get("idleTimeout")
    if check(idle is not None, where, "connectionPool.http.idleTimeout must be set (default 1h cuts nothing, but say it)"):
        check(duration_seconds(idle) >= 3600, where, f"connectionPool.http.idleTimeout {idle} < 3600s")
    check(http.get("h2UpgradePolicy") == "DO_NOT_UPGRADE", where, "upstream must stay HTTP/1.1 (h2UpgradePolicy: DO_NOT_UPGRADE)")
    check(http.get("maxRequestsPerConnection", 0) in (0, None), where, "maxRequestsPerConnection would cut WebSockets")
    tcp = tp.get("connectionPool", {}).get("tcp", {})
    check(tcp.get("maxConnections", 0) >= 10000, where, "connectionPool.tcp.maxConnections must allow many long connections")
    check("maxConnectionDuration" not in tcp, where, "maxConnectionDuration would cut WebSockets")


def check_istio_set(docs, active, where):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("Gateway", "DestinationRule", "VirtualService"):
        check(len(by_kind.get(kind, [])) == 1, where, f"expected one {kind}, got {len(by_kind.get(kind, []))}")
    if failures and any(f.startswith(where) and "expected one" in f for f in failures):
        return None
    gw, dr, vs = by_kind["Gateway"][0], by_kind["DestinationRule"][0], by_kind["VirtualService"][0]
    check_destination_rule(dr, f"{where} DestinationRule")
    check_virtual_service(vs, dr, active, f"{where} VirtualService")
    check(gw["metadata"]["name"] in vs["spec"].get("gateways", []), where, "the VirtualService binds the Gateway")
    gw_hosts = {h for s in gw["spec"]["servers"] for h in s["hosts"]}
    check(set(vs["spec"]["hosts"]) <= gw_hosts, where, "the VirtualService hosts are served by the Gateway")
    return dr


# === The chart's Kubernetes objects ===========================================================

def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def probe_path(container, probe):
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path")


# Settings that name a file from a Secret the chart mounts, and the directory it mounts at.
SECRET_FILES = {
    "DANMAKU_REDIS_PASSWORD_FILE": "/etc/danmaku/redis",
    "DANMAKU_REDIS_CA_FILE": "/etc/danmaku/redis",
    "DANMAKU_REDIS_CERT_FILE": "/etc/danmaku/redis",
    "DANMAKU_REDIS_KEY_FILE": "/etc/danmaku/redis",
    "DANMAKU_JWT_PUBLIC_KEY_FILE": "/etc/danmaku/jwt",
}


def check_secret_files(pod, c, env, expect, where):
    """The Secret files of SECRET_FILES: exactly those in `expect` are set, each in a read-only
    mount of a Secret volume that carries its key; no Secret volume or mount besides them."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = c.get("volumeMounts") or []
    got = {var for var in SECRET_FILES if var in env}
    check(got == expect, where, f"Secret files set: {sorted(got)}, expected {sorted(expect)}")
    used = set()
    for var in sorted(got):
        path = (env.get(var) or {}).get("value")
        check(path is not None and "valueFrom" not in env[var], where, f"{var} is a path, not a value from elsewhere")
        if path is None:
            continue
        directory, key = path.rsplit("/", 1)
        check(directory == SECRET_FILES[var], where, f"{var} ({path}) lies in {SECRET_FILES[var]}")
        m = [m for m in mounts if m["mountPath"].rstrip("/") == directory]
        check(len(m) == 1 and m[0].get("readOnly") is True, where, f"{var} ({path}) lies in one read-only mount")
        if not m:
            continue
        secret = volumes.get(m[0]["name"], {}).get("secret")
        check(secret and secret.get("secretName"), where, f"{var} comes from a named Secret's volume")
        if not secret:
            continue
        items = {i["key"]: i["path"] for i in secret.get("items") or []}
        check(items.get(key) == key, where, f"the Secret volume of {var} carries key {key} as file {key}")
        used.add(m[0]["name"])
    secret_volumes = {n for n, v in volumes.items() if "secret" in v}
    check(secret_volumes == used, where, f"Secret volumes {sorted(secret_volumes)}, expected {sorted(used)}")
    mounted = {m["name"] for m in mounts if m["name"] in secret_volumes}
    check(mounted == used, where, f"Secret mounts {sorted(mounted)}, expected {sorted(used)}")


def check_deployment(dep, where, expect_files=frozenset()):
    spec = dep["spec"]
    tmpl = spec["template"]
    sel = spec["selector"]["matchLabels"]
    slot = sel.get("slot")
    check(slot in SLOTS, where, f"selector must include slot=blue|green, got {sel}")
    check(tmpl["metadata"]["labels"].get("slot") == slot, where, "pod template slot label matches the selector")
    pod = tmpl["spec"]
    containers = pod["containers"]
    check(len(containers) == 1, where, "one container")
    c = containers[0]
    env = env_of(c)
    check(env.get("DANMAKU_SLOT", {}).get("value") == slot, where, f"DANMAKU_SLOT must be {slot}")
    check(env.get("DANMAKU_LISTEN", {}).get("value") == "0.0.0.0:8080", where, "DANMAKU_LISTEN=0.0.0.0:8080")
    check(((env.get("DANMAKU_POD_NAME") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          where, "DANMAKU_POD_NAME from the downward API metadata.name")
    for secret in ("DANMAKU_JWT_SECRET", "DANMAKU_SERVICE_TOKENS"):
        e = env.get(secret) or {}
        check("value" not in e and "secretKeyRef" in (e.get("valueFrom") or {}), where, f"{secret} must come from a Secret")
    # Redis secrets and the identity provider's key are files from a mounted Secret, never
    # environment values; present exactly when the case set them.
    check("DANMAKU_REDIS_PASSWORD" not in env, where, "the Redis password comes as a file (DANMAKU_REDIS_PASSWORD_FILE)")
    check_secret_files(pod, c, env, expect_files, where)
    # Probes: liveness never looks at readiness (CPU, Redis) or a busy pod would be restarted.
    check(probe_path(c, "livenessProbe") == "/livez", where, "livenessProbe on /livez")
    check(probe_path(c, "readinessProbe") == "/readyz", where, "readinessProbe on /readyz")
    check(probe_path(c, "startupProbe") == "/livez", where, "startupProbe on /livez")
    # Shutdown: preStop sleep, then the drain, then exit; the grace period must cover them.
    pre = (c.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        pre_s = int(pre["sleep"]["seconds"])
    elif "exec" in pre:
        cmd = pre["exec"]["command"]
        pre_s = int(cmd[-1]) if cmd and cmd[0] == "sleep" else 0
    else:
        pre_s = 0
    check(pre_s >= 1, where, "preStop must sleep so endpoints update before SIGTERM")
    drain_ms = int((env.get("DANMAKU_DRAIN_MS") or {}).get("value", "10000"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need = math.ceil(drain_ms / 1000) + pre_s
    check(grace > need, where, f"terminationGracePeriodSeconds {grace} must exceed drain {drain_ms} ms + preStop {pre_s} s")
    check(grace >= need + 5, where, f"terminationGracePeriodSeconds {grace} leaves under 5 s for the exit after the drain")
    # Hardening.
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
    check(psc.get("runAsNonRoot") or csc.get("runAsNonRoot"), where, "runAsNonRoot")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    check(uid is not None and uid != 0, where, "a non-zero runAsUser")
    check(csc.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation: false")
    check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), where, "capabilities drop ALL")
    check(not (csc.get("capabilities") or {}).get("add"), where, "no added capabilities")
    seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    check(seccomp == "RuntimeDefault", where, "seccompProfile RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False, where, "no service account token")
    res = c.get("resources") or {}
    check((res.get("requests") or {}).get("cpu") and (res.get("requests") or {}).get("memory"), where, "cpu and memory requests")
    check((res.get("limits") or {}).get("cpu"), where, "a CPU limit (/readyz measures against it)")
    # Topology spread over the slot's own pods.
    tsc = pod.get("topologySpreadConstraints") or []
    check(tsc, where, "topologySpreadConstraints")
    for t in tsc:
        check(t["labelSelector"]["matchLabels"].get("slot") == slot, where, "topology spread counts the slot's pods")
    return slot


def check_chart_case(name, active, path, k8s_version, istio_schemas, expect_files=frozenset()):
    where = f"chart[{name}]"
    docs = load_docs(path)
    check(docs, where, "rendered nothing")
    istio_docs = []
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion", "")
        dwhere = f"{where} {kind}/{d.get('metadata', {}).get('name')}"
        if group_of(api) in ISTIO_GROUPS:
            validate_istio(d, istio_schemas, dwhere)
            istio_docs.append(d)
        elif (group_of(api), kind) in CRD_KINDS:
            check(api == "monitoring.coreos.com/v1", dwhere, "ServiceMonitor is monitoring.coreos.com/v1")
            ep = d["spec"]["endpoints"]
            check(any(e.get("path") == "/metrics" and e.get("port") == "http" for e in ep), dwhere, "scrapes /metrics on port http")
        else:
            validate_k8s(d, k8s_version, dwhere)

    kinds = lambda k: [d for d in docs if d["kind"] == k]  # noqa: E731
    deployments = {}
    for dep in kinds("Deployment"):
        slot = check_deployment(dep, f"{where} Deployment/{dep['metadata']['name']}", expect_files)
        deployments[slot] = dep
    check(active in deployments, where, f"the active slot {active} has a Deployment")

    services = {s["metadata"]["labels"].get("danmaku.io/service-role"): s for s in kinds("Service")}
    by_role = {}
    for s in kinds("Service"):
        by_role.setdefault(s["metadata"]["labels"].get("danmaku.io/service-role"), []).append(s)
    check(len(by_role.get("active", [])) == 1, where, "one active Service")
    if services.get("active"):
        check(services["active"]["spec"]["selector"].get("slot") == active, where,
              f"the active Service selects slot={active}, got {services['active']['spec']['selector']}")
    slot_svcs = {s["spec"]["selector"].get("slot") for s in by_role.get("slot", [])}
    check(slot_svcs == set(deployments), where, f"one Service per enabled slot: {slot_svcs} vs {set(deployments)}")
    check(len(by_role.get("mesh", [])) == 1 and "slot" not in by_role["mesh"][0]["spec"]["selector"], where,
          "a mesh Service over both slots (for Istio subsets)")
    for s in kinds("Service"):
        for p in s["spec"]["ports"]:
            check(p.get("appProtocol") in ("http", "kubernetes.io/ws"), where,
                  f"Service {s['metadata']['name']} port {p.get('name')} needs appProtocol http or kubernetes.io/ws")
        # Every Service selects something a Deployment runs.
        sel = s["spec"]["selector"]
        check(any(all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                  for dep in deployments.values()), where, f"Service {s['metadata']['name']} selects no pod")

    for hpa in kinds("HorizontalPodAutoscaler"):
        hw = f"{where} HPA/{hpa['metadata']['name']}"
        target = hpa["spec"]["scaleTargetRef"]
        check(target["kind"] == "Deployment" and target["name"] in {d["metadata"]["name"] for d in deployments.values()},
              hw, "targets one of the Deployments")
        down = (hpa["spec"].get("behavior") or {}).get("scaleDown") or {}
        check(down.get("stabilizationWindowSeconds", 0) >= 600, hw, "scale-down stabilizationWindowSeconds >= 600")
        check(down.get("policies") and all(p["type"] != "Percent" or p["value"] <= 20 for p in down["policies"]),
              hw, "small scale-down policies")
        check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]), hw, "scales on CPU")
    for pdb in kinds("PodDisruptionBudget"):
        check(pdb["spec"]["selector"]["matchLabels"].get("slot") in SLOTS, where, "PDB selects one slot")

    if istio_docs:
        dr = check_istio_set(istio_docs, active, f"{where} istio")
        if dr is not None:
            mesh = by_role.get("mesh", [None])[0]
            if mesh is not None:
                check(dr["spec"]["host"].split(".")[0] == mesh["metadata"]["name"], where,
                      "the DestinationRule host is the mesh Service (both slots behind it)")
    return {d["kind"] for d in docs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", required=True)
    ap.add_argument("--istio-crds", required=True)
    ap.add_argument("--istio-dir", required=True)
    ap.add_argument("--case", action="append", default=[], help="NAME:ACTIVE_SLOT:FILE")
    ap.add_argument("--secret-files", action="append", default=[],
                    help="NAME=VAR,VAR: the Secret files (SECRET_FILES) case NAME sets; other cases set none")
    args = ap.parse_args()
    expect = {}
    for item in args.secret_files:
        name, variables = item.split("=", 1)
        expect[name] = frozenset(v for v in variables.split(",") if v)
        unknown = expect[name] - set(SECRET_FILES)
        if unknown:
            ap.error(f"--secret-files {name}: not a Secret file setting: {sorted(unknown)}")

    schemas = load_istio_schemas(args.istio_crds)
    print(f"validate: {len(schemas)} Istio CRD schemas; Kubernetes {args.k8s_version} (strict)")

    import glob
    import os
    plain = []
    for path in sorted(glob.glob(os.path.join(args.istio_dir, "*.yaml"))):
        for d in load_docs(path):
            validate_istio(d, schemas, f"{path} {d.get('kind')}/{d.get('metadata', {}).get('name')}")
            plain.append(d)
    check_istio_set(plain, "blue", args.istio_dir)
    print(f"validate: {args.istio_dir}/: {len(plain)} resources")

    for case in args.case:
        name, active, path = case.split(":", 2)
        kinds = check_chart_case(name, active, path, args.k8s_version, schemas, expect.get(name, frozenset()))
        print(f"validate: chart[{name}] active={active}: {', '.join(sorted(kinds))}")

    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    if failures:
        print(f"validate: {len(failures)} failed", file=sys.stderr)
        return 1
    print("validate: all deploy checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
