"""Shared fixtures: the real stack (Kafka + Redis), unique topics and key prefixes per test.

Tests marked ``stack`` talk to the real broker and Redis. If they are not
running, the session starts them with ``infra/stack.py`` and stops them at the
end; it never skips (in CI a missing service is a failure, not a skip).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from infra import stack as infra_stack
from streams.runtime.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def stack():
    """Kafka and Redis, up for the whole session; stopped at the end if this session started them."""
    started = False
    if not infra_stack.running():
        # through the CLI, so the daemons are not children of the test process
        subprocess.run([sys.executable, "-m", "infra.stack", "up"], cwd=ROOT, check=True)
        started = True
    yield
    if started and not os.environ.get("WF_KEEP_STACK"):
        subprocess.run([sys.executable, "-m", "infra.stack", "down"], cwd=ROOT, check=True)


@pytest.fixture
def settings(stack, request) -> Settings:
    """Settings with a topic and key prefix unique to this test, topics created."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    s = load_settings(
        {},
        # the broker and Redis the session's stack runs on (WF_KAFKA_PORT, WF_REDIS_PORT; 9092 and 6379 by default)
        kafka_bootstrap=f"{infra_stack.KAFKA_HOST}:{infra_stack.kafka_port()}",
        redis_url=f"redis://{infra_stack.KAFKA_HOST}:{infra_stack.redis_port()}/0",
        topic_prefix=prefix,
        redis_prefix=prefix,
        app_id=f"wf-test-{prefix}",
        partitions=4,
        batch_within_s=0.05,
    )
    infra_stack.create_topics(prefix, s.partitions)
    return s


def data_file(name: str) -> Path | None:
    """A real dataset in ../shared/data, or None where it is absent (fresh clone)."""
    path = DATA / name
    return path if path.exists() else None
