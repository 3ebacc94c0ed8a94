"""What every bench script shares: the project on ``sys.path``, its argument parser, the stack check, tables, process figures.

``python bench/X.py`` puts ``bench/`` first on ``sys.path``; a bench script
imports this module before any of the project's (``from _common import ROOT,
parser``), and importing it puts the project root on ``sys.path`` too, so
``detectors``, ``streams``, ``gateway`` and ``infra`` import as installed.

Examples
--------
>>> from bench._common import aligned, parser, ruled
>>> p = parser("/x/bench/demo.py", "Demo bench.\\n\\nMore text.")
>>> p.prog, p.description
('python bench/demo.py', 'Demo bench.')
>>> print(ruled(f"{'a':>3} {'b':>3}", [f"{1:>3} {2:>3}"]))
  a   b
-------
  1   2
>>> for line in aligned([["name", "n"], ["worker", "12"]]):
...     print(line)
name     n
----------
worker  12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: The project root (the parent of ``bench/``).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The shared real data (``../shared/data``, absent on a fresh clone) and its main file.
SHARED_DATA = ROOT.parent / "shared" / "data"
MONTGOMERY = SHARED_DATA / "montgomery-pa-911-2015-12-to-2016-08.csv"
#: Where the bench scripts write their figures by default.
OUT = ROOT / "out" / "bench"
#: The error a bench script that needs Kafka and Redis gives when they are not up.
STACK_DOWN = "the stack is not running: start it with python -m infra.stack up"


def parser(script: str, doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """The argument parser of the bench script at path ``script`` (pass ``__file__``): its program name is
    ``python bench/NAME.py`` and its description the first paragraph of ``doc`` (pass ``__doc__``)."""
    return argparse.ArgumentParser(prog=f"python bench/{Path(script).name}", description=(doc or "").split("\n\n")[0], **kwargs)


def add_json(p: argparse.ArgumentParser, default: Path | None = None, help: str | None = None) -> None:
    """``--json PATH``: where the figures go (always written, to ``default`` unless given) or, without a
    default, an optional extra copy of the figures."""
    if default is None:
        p.add_argument("--json", type=Path, metavar="PATH", help=help or "also write the figures to this JSON file")
    else:
        shown = default.relative_to(ROOT) if default.is_relative_to(ROOT) else default
        p.add_argument("--json", type=Path, default=default, help=help or f"where the figures go (default {shown})")


def add_runs(p: argparse.ArgumentParser, default: int, help: str = "runs of each measurement; the median is reported") -> None:
    """``--runs N`` (alias ``--repeat``): how many times each measurement is repeated."""
    p.add_argument("--runs", "--repeat", type=int, default=default, help=f"{help} (default %(default)s)")


def stack_running() -> bool:
    """Whether Kafka and Redis answer (``python -m infra.stack up`` started them)."""
    from infra import stack

    return stack.running()


def require_stack(p: argparse.ArgumentParser | None = None) -> None:
    """Stop with :data:`STACK_DOWN` when the stack is not running: a usage error of ``p`` if given, else ``RuntimeError``."""
    if stack_running():
        return
    if p is not None:
        p.error(STACK_DOWN)
    raise RuntimeError(STACK_DOWN)


def ruled(head: str, rows: Iterable[str]) -> str:
    """A table: its ``head`` line, a rule of dashes as wide, and the already formatted ``rows``."""
    return "\n".join([head, "-" * len(head), *rows])


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows of text cells as table lines: the first row is the head, followed by a rule of dashes; the first
    column is left-aligned, the others right-aligned, each as wide as its widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return ruled(lines[0], lines[1:]).split("\n")


def write_json(path: Path, figures: dict, default: Callable[[Any], Any] | None = None) -> None:
    """``figures`` as indented JSON at ``path`` (its folder made if needed); ``default`` as in ``json.dumps``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=default) + "\n", encoding="utf-8")


def default_source(workdir: Path, calls: int) -> Path:
    """The real main file (:data:`MONTGOMERY`) where it is present, else a simulated file in ``workdir`` with
    at least ``calls`` calls (``python -m streams.ingest.simulator``, about 380 calls a day)."""
    if MONTGOMERY.exists():
        return MONTGOMERY
    out = workdir / "sim.csv"
    days = max(2, calls // 380 + 2)
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", str(days), "--no-progress"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` now, MiB (``/proc/PID/status`` VmRSS); ``OSError`` when it is gone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (``/proc/PID/stat``); ``OSError`` when it is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; utime, stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory(pid: int, *, with_plan_process: bool = True) -> dict[str, float]:
    """Resident memory of a process now and at its peak, MiB (``/proc/PID/status`` VmRSS and VmHWM).

    A worker's figures include its plan process (``streams.counting.planproc``, a child
    of its own) unless ``with_plan_process`` is False.
    """
    from infra.processes import plan_processes

    out = {"rss_mib": 0.0, "peak_mib": 0.0}
    for p in [pid, *(plan_processes(pid) if with_plan_process else [])]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mib" if key == "VmRSS" else "peak_mib"] += int(value.split()[0]) / 1024
    return out
