"""Every performance figure of issue 5 in one run on this machine: a table, and one JSON file.

    python -m infra.stack up
    python bench/all.py [--quick] [--out out/bench]

Runs, one after the other (never two at once: they would share the cores),
each benchmark script as its own process, with its own JSON file under
``--out``:

1. ``throughput.py``: the full pipeline (one and two workers) next to a bare
   aiokafka consumer, a bare Faust agent and the Quix Streams peer;
2. ``latency.py``: call-to-alert latency at 100, 1,000 and 5,000 calls/s;
3. ``backfill.py``: a year of simulated calls and the largest real dataset,
   replayed and learnt;
4. ``memory.py``: worker and gateway resident memory at 10k and 100k cells;
5. ``detect_storm.py``: the detectors alone in a storm (calls per CPU second);
6. ``commit_cost.py``: one counting batch's validation, snapshot, planning and
   commit script, without Kafka or Faust.

Then prints the headline figures and writes them, with the machine and the
commit they were measured on, to ``{out}/all.json``. ``--quick`` runs each at
a reduced size (a check that the harness works, not figures to quote).
A step that fails is reported and the others still run; the exit status is 1
if any failed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import ROOT, parser, require_stack, write_json

#: name, script, arguments for the full run, arguments for --quick
STEPS: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("throughput", "throughput.py", [], ["--calls", "5000", "--runs", "1"]),
    ("latency", "latency.py", ["--rates", "100,1000,5000", "--seconds", "60"], ["--rates", "100", "--seconds", "10"]),
    ("backfill", "backfill.py", [], ["--days", "30"]),
    ("memory", "memory.py", [], ["--cells", "1000,5000"]),
    ("detect_storm", "detect_storm.py", [], ["--phases", "100x10,1000x5"]),
    ("commit_cost", "commit_cost.py", [], ["--calls", "2000", "--rounds", "1"]),
)


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def machine() -> dict:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": rev + ("+dirty" if dirty else ""),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def run_step(name: str, script: str, args: list[str], out: Path) -> dict:
    path = out / f"{name}.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(path)]
    _say(f"{name}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT)
    took = round(time.monotonic() - started, 1)
    if proc.returncode != 0 or not path.exists():
        _say(f"{name}: FAILED (exit {proc.returncode}) after {took} s")
        return {"ok": False, "exit": proc.returncode, "seconds": took}
    _say(f"{name}: done in {took} s")
    return {"ok": True, "seconds": took, "figures": json.loads(path.read_text())}


def headline(results: dict) -> list[str]:
    """The figures the issue asks for, one line each (what a step did not produce is shown as missing)."""
    lines = []
    tp = results.get("throughput", {}).get("figures")
    if tp:
        for key, r in tp.get("readers", {}).items():
            rate, share = r.get("rate", 0), r.get("vs_aiokafka", 0)
            lines.append(f"throughput  {r.get('name', key):<34} {rate:>10,.0f} records/s  {share:6.1%} of bare aiokafka")
        for t in tp.get("targets", {}).values():
            verdict = "met" if t.get("met") else ("not measured" if t.get("met") is None else "NOT met")
            value = t.get("value")
            lines.append(f"target      {t.get('target')}: {value if value is None else f'{value:.2f}'} ({verdict})")
    lat = results.get("latency", {}).get("figures")
    if lat:
        for row in lat.get("loads", []):
            a = row.get("alerts", {})
            ms = " ".join(f"{k} {a[k]:,.0f} ms" for k in ("p50", "p95", "p99", "max") if k in a)
            offered, sent = row["offered_per_s"], row["achieved_per_s"]
            lines.append(f"latency     {offered:>6g} calls/s offered, {sent:g} sent/s: {a.get('n', 0)} alerts; {ms}")
    storm = results.get("detect_storm", {}).get("figures")
    if storm:
        for ph in storm.get("phases", []):
            lines.append(
                f"detectors   {ph['rate_per_s']:>6g} calls/s storm: {ph['calls_per_cpu_s']:,} calls per CPU second, "
                f"slowest call {ph['worst_call_ms']:g} ms"
            )
    cost = results.get("commit_cost", {}).get("figures")
    if cost:
        per = ", ".join(f"{step} {row['ms_per_batch']:.1f}" for step, row in cost.get("steps", {}).items())
        lines.append(f"batch       {cost['batch_size']:,} records: {per} ms")
    for name in ("backfill", "memory"):
        figures = results.get(name, {}).get("figures")
        if figures and figures.get("summary"):
            lines += [f"{name:<11} {line}" for line in figures["summary"]]
    for name, step in results.items():
        if isinstance(step, dict) and step.get("ok") is False:
            lines.append(f"{name:<11} FAILED (exit {step.get('exit')}); see its output above")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--quick", action="store_true", help="reduced sizes: checks the harness, not figures to quote")
    p.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(s[0] for s in STEPS))
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench", help="folder for the JSON files (default out/bench)")
    args = p.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - {s[0] for s in STEPS}
    if unknown:
        p.error(f"unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(s[0] for s in STEPS)}")
    require_stack(p)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "quick": args.quick}
    for name, script, full, quick in STEPS:
        if not only or name in only:
            results[name] = run_step(name, script, quick if args.quick else full, args.out)
    print("\n".join(["", "== all figures, this machine, this run ==", *headline(results)]))
    write_json(args.out / "all.json", results)
    print(f"\nwritten to {args.out / 'all.json'}")
    return 0 if all(v.get("ok") for k, v in results.items() if isinstance(v, dict) and "ok" in v) else 1


if __name__ == "__main__":
    sys.exit(main())
