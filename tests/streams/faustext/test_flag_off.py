"""The pipeline with ``WF_FAUST_FASTPATH=0``: the worker on Faust and aiokafka as released counts exactly too.

``test_pipeline.py`` runs the worker on its own transport (the default); this
runs its exact-count test once with the flag off, on the running stack. The
settings reach the worker through its environment (``tests.stackutil.worker_env``);
its ``/metrics`` page shows it ran Faust's own consumer: no fetch-loop counters.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import data_file
from tests.stackutil import ROOT, WorkerProcess, wait_caught_up, worker_env
from tests.streams import test_pipeline as pipeline

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, str]:
    """What ``test_pipeline.py`` replays: the real Montgomery file when present, else a simulated one."""
    real = data_file(pipeline.MONTGOMERY)
    if real is not None:
        return real, "montgomery-pa"
    out = tmp_path_factory.mktemp("sim") / "sim.csv"
    cmd = [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", "40", "--seed", "11"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return out, "watchfloor"


def test_replayed_calls_are_counted_exactly_with_faust_and_aiokafka_as_released(settings, source, tmp_path):
    off = replace(settings, retention_s=400 * 86400, batch_size=500, faust_fastpath=False)
    assert worker_env(off)["WF_FAUST_FASTPATH"] == "0"
    worker = WorkerProcess(off, tmp_path).start()
    try:
        out = pipeline.finish(pipeline.replay(off, *source, pipeline.N_CALLS))
        assert f"replayed {pipeline.N_CALLS} calls" in out
        wait_caught_up(off, [worker])
        pipeline.assert_exact(off, source)
        page = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read().decode()
    finally:
        worker.stop()
    assert re.search(r"^watchfloor_\w+ ", page, re.M), page[:500]  # the page answered with the worker's metrics
    assert "watchfloor_fetch_" not in page  # and without the worker transport's counters: Faust's own consumer ran
