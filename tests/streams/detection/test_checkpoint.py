"""The detectors' checkpoint format (streams/detection/checkpoint.py): signed pickles, verified before unpickling."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from streams.detection import checkpoint
from streams.detection.checkpoint import CheckpointRefused
from streams.detection.runner import DetectionRunner, encode_points

KEY = b"a test key of thirty-two bytes!!"
OTHER_KEY = b"another key, also 32 bytes long!"


class WritesAMarker:
    """Unpickling this calls ``os.system``-like code: it writes a marker file (what an attacker's pickle would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def hostile_pickle(marker: Path) -> bytes:
    blob = pickle.dumps(WritesAMarker(marker))
    assert not marker.exists()
    return blob


def test_the_hostile_pickle_of_these_tests_does_run_code_when_unpickled(tmp_path):
    """The control: the payload the other tests feed the checkpoint reader writes its marker when unpickled plainly."""
    marker = tmp_path / "control"
    pickle.loads(hostile_pickle(marker))
    assert marker.read_text() == "code ran"


def test_a_checkpoint_signed_with_the_key_restores_the_detectors():
    runner = DetectionRunner()
    runner.feed(encode_points([(0, 0, 1_700_000_000.0, "882aac941dfffff", "EMS", None)]), wall=1_700_000_060.0)
    blob = checkpoint.sign(pickle.dumps(runner), KEY, offset=12)
    restored = checkpoint.restore(blob, KEY, offset=12)
    assert isinstance(restored, DetectionRunner)
    assert restored._seen == {0: 0} and restored.counters == runner.counters


def test_an_unsigned_pickle_is_refused_without_running_its_code(tmp_path):
    """A pickle written straight into Redis (no signature, as an attacker or an older version would) is never unpickled."""
    marker = tmp_path / "marker"
    with pytest.raises(CheckpointRefused, match="not a signed checkpoint"):
        checkpoint.restore(hostile_pickle(marker), KEY, offset=0)
    assert not marker.exists()


def test_a_checkpoint_signed_with_another_key_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "marker"
    blob = checkpoint.sign(hostile_pickle(marker), OTHER_KEY, offset=5)
    with pytest.raises(CheckpointRefused, match="signature did not verify"):
        checkpoint.restore(blob, KEY, offset=5)
    assert not marker.exists()


def test_a_tampered_payload_is_refused_without_running_its_code(tmp_path):
    """A signed checkpoint whose payload was swapped for another (the header and MAC kept) does not verify."""
    marker = tmp_path / "marker"
    good = checkpoint.sign(pickle.dumps(DetectionRunner()), KEY, offset=5)
    header = len(checkpoint.MAGIC) + 1 + 32
    tampered = good[:header] + hostile_pickle(marker)
    with pytest.raises(CheckpointRefused, match="signature did not verify"):
        checkpoint.restore(tampered, KEY, offset=5)
    flipped = bytearray(good)
    flipped[-3] ^= 1
    with pytest.raises(CheckpointRefused, match="signature did not verify"):
        checkpoint.verify(bytes(flipped), KEY, offset=5)
    assert not marker.exists()


def test_a_signed_state_given_another_offset_is_refused():
    """The offset is signed with the state: an old state cannot be passed off as a later checkpoint."""
    blob = checkpoint.sign(b"state", KEY, offset=5)
    with pytest.raises(CheckpointRefused, match="signature did not verify"):
        checkpoint.verify(blob, KEY, offset=6)


def test_another_format_version_and_truncated_bytes_are_refused():
    blob = checkpoint.sign(b"state", KEY, offset=1)
    with pytest.raises(CheckpointRefused, match="format version is 2, this worker reads 1"):
        checkpoint.verify(blob[:4] + bytes([2]) + blob[5:], KEY, offset=1)
    for cut in (0, 3, 5, 20):
        with pytest.raises(CheckpointRefused, match="not a signed checkpoint"):
            checkpoint.verify(blob[:cut], KEY, offset=1)


def test_signing_needs_a_key_of_at_least_32_bytes():
    assert checkpoint.check_key(os.urandom(32), "K")
    with pytest.raises(ValueError, match="K must hold at least 32 bytes .* found 31"):
        checkpoint.check_key(b"x" * 31, "K")
