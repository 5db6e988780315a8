"""bench/capacity's arithmetic, checked on a recorded bench/compare result.

Runs the model (bench/capacity_inputs.py, capacity_model.py and capacity_report.py) and the command (bench/capacity)
on bench/results/compare-2026-12-01-e1f64f7 and checks the plans against figures computed
here from the recorded runs' raw numbers (CPU seconds, deliveries, Redis CPU seconds).

  /usr/bin/python3 -m unittest discover -s tests/capacity
"""
import json
import math
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULT = ROOT / "bench" / "results" / "compare-2026-12-01-e1f64f7"
CLI = ROOT / "bench" / "capacity"
sys.path.insert(0, str(ROOT / "bench"))
import capacity_inputs  # noqa: E402  (bench/capacity's modules)
import capacity_model  # noqa: E402
import capacity_report  # noqa: E402

model = capacity_model
GIB = 1024**3


def recorded(case):
    [path] = RESULT.glob(f"{case}-danmaku-*.json")
    return json.loads(path.read_text())


def build(*extra):
    args = capacity_report.parse_args([str(RESULT), "--bytes-per-delivery", "181", *extra])
    return model.build(str(RESULT), args)


def cli(*argv):
    return subprocess.run(["/usr/bin/python3", str(CLI), *argv], capture_output=True, text=True,
                          timeout=60)


class Recorded(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.result = build()
        cls.hot = recorded("fanout-10k-hot-50cps")["summary"]
        cls.zipf = recorded("fanout-10k-zipf")["summary"]
        cls.idle = recorded("idle-20k")["summary"]
        # Seconds of server CPU per delivery, from the raw CPU seconds and deliveries.
        cls.hot_s = cls.hot["server_cpu_s"] / cls.hot["deliveries"]
        cls.zipf_s = cls.zipf["server_cpu_s"] / cls.zipf["deliveries"]
        cls.idle_cores = cls.idle["cpu_us_per_connection_s"] * 1e-6
        # Every stream of the Zipf run has 2+ viewers (30 % on one, the rest Zipf over 99:
        # the least popular gets 7,000 × (1/100) / (H_100 - 1) ≈ 17), so both instances
        # are subscribed to every comment's stream.
        least = 7000 * (1 / 100) / (sum(1 / i for i in range(1, 101)) - 1)
        assert least >= 2
        cls.redis_s = cls.zipf["other_cpu_s"] / (cls.zipf["accepted_comments"] * 2)

    def test_inputs_come_from_the_runs_named(self):
        m = self.result["inputs"]
        self.assertAlmostEqual(m["cpu_hot"]["value"], self.hot_s * 1e6, places=9)
        self.assertIn("fanout-10k-hot-50cps-danmaku", m["cpu_hot"]["source"])
        self.assertAlmostEqual(m["cpu_hot"]["comments_per_frame"], 7_490_000 / 2_215_000)
        self.assertAlmostEqual(m["cpu_zipf"]["value"], self.zipf_s * 1e6, places=9)
        self.assertIn("fanout-10k-zipf-danmaku", m["cpu_zipf"]["source"])
        self.assertEqual(m["rss_conn"]["value"], self.idle["rss_per_connection_bytes"])
        self.assertIn("idle-20k-danmaku", m["rss_conn"]["source"])
        base = (self.idle["server_rss_bytes"] - self.idle["rss_per_connection_bytes"] * 20000) / 2
        self.assertAlmostEqual(m["base_rss"]["value"], base)
        self.assertAlmostEqual(m["redis"]["value"], self.redis_s * 1e6)
        self.assertAlmostEqual(m["redis"]["value"], 0.56e6 / 6000)
        self.assertIn("fanout-10k-zipf-danmaku", m["redis"]["source"])
        self.assertEqual(m["bytes"], {"value": 181.0, "unit": "bytes per delivery",
                                      "source": "--bytes-per-delivery (given)"})

    def test_plan_a_by_hand(self):
        a = self.result["plans"]["a"]
        self.assertEqual(a["deliveries_per_s"], 50 * 1_000_000)
        cores = 50e6 * self.hot_s + 1e6 * self.idle_cores
        pods = math.ceil(cores / 0.7)
        self.assertEqual(pods, 148)
        self.assertEqual(a["pods"], pods)
        self.assertEqual(a["sizing"]["binds"], "cpu")
        self.assertAlmostEqual(a["sizing"]["cores"], cores)
        # Every pod has ~6,800 of the stream's viewers: all are subscribed.
        self.assertAlmostEqual(a["subscribed_pods"], pods)
        self.assertAlmostEqual(a["redis_messages_per_s"], 50 * pods)
        self.assertAlmostEqual(a["shard_cpu"], 50 * pods * self.redis_s)
        self.assertFalse(a["shard_fits"])  # 0.69 core against 0.5
        self.assertTrue(a["shard_under_one_core"])
        self.assertAlmostEqual(a["pods_at_shard_budget"], 0.5 / (50 * self.redis_s))
        self.assertAlmostEqual(a["egress_gbit_s"], 50e6 * 181 * 8 / 1e9)
        self.assertAlmostEqual(a["costs"]["monthly"]["pods"], pods * (1 * 0.04 + 2 * 0.005) * 730)
        self.assertAlmostEqual(a["costs"]["monthly"]["egress"], 50e6 * 181 * 3600 / 1e9 * 0.05 * 730)
        self.assertEqual(a["redis_shards"], 3)
        # The chart's viewer budget (30 c/s) cuts 40 % of the deliveries.
        self.assertAlmostEqual(a["what_if"]["viewer_budget"]["cut"], 0.4)

    def test_plan_b_by_hand(self):
        b = self.result["plans"]["b"]
        h = sum(1 / i for i in range(1, 100_001))
        viewers = [1e6 / (i * h) for i in range(1, 100_001)]
        rates = [min(50, 0.01 * v) for v in viewers]
        deliveries = sum(r * v for r, v in zip(rates, viewers))
        self.assertAlmostEqual(b["deliveries_per_s"], deliveries, delta=1e-6 * deliveries)
        self.assertAlmostEqual(b["comments_per_s"], sum(rates), delta=1e-6 * sum(rates))
        self.assertEqual(b["streams_at_cap"], 16)  # 1e6 / (i H) >= 5,000 for i <= 16
        pods = math.ceil((deliveries * self.zipf_s + 1e6 * self.idle_cores) / 0.7)
        self.assertEqual(b["pods"], pods)
        self.assertEqual(b["sizing"]["binds"], "cpu")
        on = [pods * (1 - (1 - 1 / pods) ** v) for v in viewers]
        messages = sum(r * p for r, p in zip(rates, on))
        self.assertAlmostEqual(b["subscriptions"], sum(on), delta=1e-6 * sum(on))
        self.assertAlmostEqual(b["redis_messages_per_s"], messages, delta=1e-6 * messages)
        self.assertAlmostEqual(b["redis_cpu"], messages * self.redis_s, delta=1e-6 * messages * self.redis_s)
        self.assertEqual(b["redis_shards"], math.ceil(messages * self.redis_s / 0.5))
        self.assertAlmostEqual(b["hottest_stream_shard_cpu"], 50 * pods * self.redis_s, places=3)

    def test_expected_pods_small_and_large(self):
        for p in (1, 2, 50, 148):
            self.assertAlmostEqual(model.expected_pods(p, 1), 1.0)
            self.assertEqual(model.expected_pods(p, 0), 0.0)
        self.assertAlmostEqual(model.expected_pods(2, 2), 1.5)  # both on one pod half the time
        self.assertAlmostEqual(model.expected_pods(148, 1_000_000), 148.0)
        self.assertLess(model.expected_pods(148, 148), 148 * (1 - math.exp(-1)) + 1)

    def test_zipf_weights_sum_to_one(self):
        for n, s in ((1, 1.0), (10, 1.0), (100_000, 1.0), (1000, 0.8)):
            w = model.zipf_weights(n, s)
            self.assertEqual(len(w), n)
            self.assertAlmostEqual(sum(w), 1.0, places=12)
            if n > 1:
                self.assertAlmostEqual(w[0] / w[1], 2**s)

    def test_memory_binds_with_a_tiny_memory_limit(self):
        a = build("--pod-memory-gib", "0.05")["plans"]["a"]
        base = (self.idle["server_rss_bytes"] - self.idle["rss_per_connection_bytes"] * 20000) / 2
        pods = math.ceil(1e6 * self.idle["rss_per_connection_bytes"] / (0.05 * GIB * 0.8 - base))
        self.assertGreater(pods, 148)
        self.assertEqual(a["pods"], pods)
        self.assertEqual(a["sizing"]["binds"], "memory")

    def test_connections_bind_with_a_low_cap(self):
        a = build("--max-connections", "1000")["plans"]["a"]
        self.assertEqual((a["pods"], a["sizing"]["binds"]), (1000, "connections"))

    def test_fixed_point_with_a_cost_per_message_received(self):
        b = build("--pod-us-per-message", "20")["plans"]["b"]
        self.assertGreater(b["fixed_point_steps"], 1)
        pods = b["pods"]
        h = sum(1 / i for i in range(1, 100_001))
        viewers = [1e6 / (i * h) for i in range(1, 100_001)]
        rates = [min(50, 0.01 * v) for v in viewers]
        base = sum(r * v for r, v in zip(rates, viewers)) * self.zipf_s + 1e6 * self.idle_cores
        messages = sum(r * pods * (1 - (1 - 1 / pods) ** v) for r, v in zip(rates, viewers))
        self.assertEqual(pods, math.ceil((base + messages * 20e-6) / 0.7))
        self.assertGreater(pods, self.result["plans"]["b"]["pods"])

    def test_the_chart_supplies_the_pod(self):
        values = (ROOT / "charts" / "danmaku" / "values.yaml").read_text()
        gate = float(re.search(r'DANMAKU_CPU_READY_THRESHOLD: "([0-9.]+)"', values).group(1))
        a = self.result["assumptions"]
        self.assertAlmostEqual(a["cpu_target"], gate - 0.1)
        self.assertEqual(a["max_connections"], 1048576 - 1048576 // 20)
        parsed = capacity_inputs.parse_values("a:\n  b:\n    cpu: \"1\"  # one\n    memory: 2Gi\n  c: 3\nd: x\n")
        self.assertEqual(parsed, {"a.b.cpu": "1", "a.b.memory": "2Gi", "a.c": "3", "d": "x"})
        self.assertEqual(capacity_inputs.quantity("500m", "cpu"), 0.5)
        self.assertEqual(capacity_inputs.quantity("2Gi", "memory"), 2 * GIB)


class CommandLine(unittest.TestCase):
    def test_without_bytes_per_delivery_it_says_which_option(self):
        r = cli(str(RESULT))
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertIn("--bytes-per-delivery", r.stderr)
        self.assertIn("wire_bytes_per_delivery", r.stderr)

    def test_text_and_json(self):
        r = cli(str(RESULT), "--bytes-per-delivery", "181")
        self.assertEqual(r.returncode, 0, r.stderr)
        for needle in ("fanout-10k-hot-50cps-danmaku", "fanout-10k-zipf-danmaku", "idle-20k-danmaku",
                       "Plan (a)", "Plan (b)", "CPU binds first: 148 pods"):
            self.assertIn(needle, r.stdout)
        j = cli(str(RESULT), "--bytes-per-delivery", "181", "--json")
        self.assertEqual(j.returncode, 0, j.stderr)
        plans = json.loads(j.stdout)["plans"]
        self.assertEqual(plans["a"]["pods"], 148)
        self.assertEqual(plans["b"]["pods"], self.build_b_pods())

    @staticmethod
    def build_b_pods():
        return build()["plans"]["b"]["pods"]

    def test_bad_input(self):
        for argv, needle in (
                (["/nonexistent/dir", "--bytes-per-delivery", "181"], "not a directory"),
                ([str(RESULT), "--bytes-per-delivery", "-1"], "--bytes-per-delivery must be above 0"),
                ([str(RESULT), "--bytes-per-delivery", "181", "--cpu-target", "1.5"], "cpu-target"),
        ):
            r = cli(*argv)
            self.assertEqual(r.returncode, 2, argv)
            self.assertIn(needle, r.stderr)
        with tempfile.TemporaryDirectory() as empty:
            r = cli(empty, "--bytes-per-delivery", "181")
            self.assertEqual(r.returncode, 2)
            self.assertIn("no danmaku run", r.stderr)

    def test_wire_bytes_are_read_from_a_run_that_has_them(self):
        with tempfile.TemporaryDirectory() as d:
            for f in RESULT.glob("*.json"):
                shutil.copy(f, d)
            [hot] = pathlib.Path(d).glob("fanout-10k-hot-50cps-danmaku-*.json")
            data = json.loads(hot.read_text())
            data["summary"]["wire_bytes_per_delivery"] = 123.5
            hot.write_text(json.dumps(data))
            r = cli(d, "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual(out["inputs"]["bytes"]["value"], 123.5)
            self.assertIn(hot.name, out["inputs"]["bytes"]["source"])
            self.assertAlmostEqual(out["plans"]["a"]["egress_gbit_s"], 50e6 * 123.5 * 8 / 1e9)


if __name__ == "__main__":
    unittest.main()
