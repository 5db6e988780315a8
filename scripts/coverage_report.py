#!/usr/bin/python3
"""Turns cargo-tarpaulin's JSON report into the coverage figures the repo keeps.

  coverage_report.py summary REPORT.json ROOT OUT.json   per-module line coverage
  coverage_report.py history SUMMARY.json COMMIT CSV      appends date,commit,total_percent,...
  coverage_report.py chart CSV OUT.svg                    line chart of total_percent per run

The server crate's modules are the top-level entries of src/: src/ws/ and src/ws.rs are one
module "ws"; lib.rs and main.rs are their own (a module with no coverable line is left out). The total is the server crate (src/). The
benchmark crate (bench/danmaku-bench) is reported beside it, not in the total. Files compiled
only for tests (tests.rs, testing.rs, anything under a tests/ folder) and generated files
(target/) are not counted.
Standard library only (Debian's /usr/bin/python3).
"""

import csv
import datetime
import json
import math
import os
import sys
from xml.sax.saxutils import escape

HEADER = ["date", "commit", "total_percent", "covered", "coverable"]


def percent(covered, coverable):
    return round(100.0 * covered / coverable, 2) if coverable else 0.0


def is_test_only(rel):
    parts = rel.split("/")
    return parts[-1] in ("tests.rs", "testing.rs") or "tests" in parts[:-1] or parts[0] == "benches"


def figure(covered, coverable):
    return {"covered": covered, "coverable": coverable, "percent": percent(covered, coverable)}


def summary(report_path, root, out_path):
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    root = os.path.realpath(root)
    modules, other = {}, {}
    for entry in report["files"]:
        path = os.path.join(*entry["path"])  # components; an absolute path starts with "/"
        rel = os.path.relpath(os.path.realpath(path), root)
        if rel.startswith("..") or rel.startswith("target/") or is_test_only(rel):
            continue
        parts = rel.split("/")
        if parts[0] == "src":
            name = parts[1][:-3] if len(parts) == 2 and parts[1].endswith(".rs") else parts[1]
            bucket = modules
        else:
            name = "/".join(parts[:2]) if parts[0] == "bench" else parts[0]
            bucket = other
        covered, coverable = bucket.get(name, (0, 0))
        bucket[name] = (covered + entry["covered"], coverable + entry["coverable"])
    covered = sum(c for c, _ in modules.values())
    coverable = sum(n for _, n in modules.values())
    out = {
        "tool": "cargo-tarpaulin --engine llvm (line coverage)",
        "total": figure(covered, coverable),
        "modules": {k: figure(*v) for k, v in sorted(modules.items()) if v[1]},
        "other_crates": {k: figure(*v) for k, v in sorted(other.items()) if v[1]},
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"total (src/): {covered}/{coverable} lines, {out['total']['percent']}%")
    width = max(len(k) for k in out["modules"]) if out["modules"] else 0
    for name, fig in sorted(out["modules"].items(), key=lambda kv: kv[1]["percent"]):
        print(f"  {name:<{width}}  {fig['percent']:6.2f}%  {fig['covered']}/{fig['coverable']}")
    for name, fig in out["other_crates"].items():
        print(f"  ({name}: {fig['percent']}%  {fig['covered']}/{fig['coverable']})")


def history(summary_path, commit, csv_path):
    with open(summary_path, encoding="utf-8") as f:
        total = json.load(f)["total"]
    new = not os.path.exists(csv_path) or os.path.getsize(csv_path) == 0
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(csv_path, "a", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if new:
            w.writerow(HEADER)
        w.writerow([date, commit, f"{total['percent']:.2f}", total["covered"], total["coverable"]])


def chart(csv_path, svg_path):
    with open(csv_path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"coverage_report.py: {csv_path} has no runs")
    values = [float(r["total_percent"]) for r in rows]
    w, h, left, right, top, bottom = 480, 200, 44, 16, 28, 34
    pw, ph = w - left - right, h - top - bottom

    def x(i):
        return left + (pw / 2 if len(values) == 1 else pw * i / (len(values) - 1))

    # The y axis spans from 5 % steps below the lowest run to 100 %, so small moves show.
    lo = max(0.0, math.floor((min(values) - 1) / 5) * 5)
    ticks = [lo + (100 - lo) * i / 4 for i in range(5)]

    def y(v):
        return top + ph * (1 - (v - lo) / (100 - lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="#fff"/>',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">'
        f"Line coverage of src/ (cargo-tarpaulin): {values[-1]:.1f}%</text>",
    ]
    for tick in ticks:
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#555">{tick:g}%</text>')
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    if len(values) > 1:
        out.append(f'<polyline points="{points}" fill="none" stroke="#1f6feb" stroke-width="2"/>')
    for i, (v, r) in enumerate(zip(values, rows)):
        title = escape(f"{r['date']} {r['commit'][:9]}: {v:.2f}% ({r['covered']}/{r['coverable']})")
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#1f6feb"><title>{title}</title></circle>')
    first, last = rows[0]["date"][:10], rows[-1]["date"][:10]
    out.append(f'<text x="{left}" y="{h - 12}" fill="#555">{escape(first)}</text>')
    if len(rows) > 1:
        out.append(f'<text x="{w - right}" y="{h - 12}" text-anchor="end" fill="#555">{escape(last)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 12}" text-anchor="middle" fill="#555">'
               f"{len(rows)} run{'s' if len(rows) != 1 else ''}</text>")
    out.append("</svg>")
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def main(argv):
    commands = {"summary": (summary, 3), "history": (history, 3), "chart": (chart, 2)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(__doc__)
    func, _ = commands[argv[1]]
    func(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
