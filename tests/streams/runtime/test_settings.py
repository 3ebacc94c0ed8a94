"""The checkpoint key's settings (streams/runtime/settings.py): from WF_CHECKPOINT_KEY, or a key file made on first use."""

from __future__ import annotations

import logging
import stat
import threading

import pytest

from streams.runtime.settings import SettingsError, checkpoint_key, load_settings

GOOD = "k" * 32


def test_the_key_in_wf_checkpoint_key_is_used_and_kept_out_of_the_settings_repr(tmp_path, caplog):
    settings = load_settings({"WF_CHECKPOINT_KEY": GOOD, "WF_CHECKPOINT_KEY_FILE": str(tmp_path / "unused.key")})
    assert GOOD not in repr(settings)
    with caplog.at_level(logging.INFO, "streams.runtime.settings"):
        assert checkpoint_key(settings) == GOOD.encode()
    assert "signed with the key in WF_CHECKPOINT_KEY" in caplog.text and GOOD not in caplog.text
    assert not (tmp_path / "unused.key").exists()


@pytest.mark.parametrize("value", ["", "short", "k" * 31])
def test_a_key_shorter_than_32_bytes_is_refused_naming_the_variable(value):
    with pytest.raises(SettingsError, match=f"WF_CHECKPOINT_KEY must hold at least 32 bytes .*found {len(value)}") as refused:
        load_settings({"WF_CHECKPOINT_KEY": value})
    if value:
        assert value not in str(refused.value), "the key is not repeated in the error"


def test_without_a_key_one_is_made_in_the_key_file_with_mode_0600_and_read_back_after(tmp_path, caplog):
    path = tmp_path / "config" / "watchfloor" / "checkpoint.key"
    settings = load_settings({"WF_CHECKPOINT_KEY_FILE": str(path)})
    with caplog.at_level(logging.INFO, "streams.runtime.settings"):
        first = checkpoint_key(settings)
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"signed with the key in {path} (WF_CHECKPOINT_KEY is unset; the file was made now" in caplog.text
    assert first.decode() not in caplog.text
    assert checkpoint_key(load_settings({"WF_CHECKPOINT_KEY_FILE": str(path)})) == first, "the same key on the next start"
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.key"], "no temporary file left behind"


def test_workers_starting_together_share_one_key(tmp_path):
    path = tmp_path / "checkpoint.key"
    settings = load_settings({"WF_CHECKPOINT_KEY_FILE": str(path)})
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(checkpoint_key(settings))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and keys[0] == path.read_bytes().strip()


def test_a_key_file_holding_a_short_key_is_refused_naming_it(tmp_path):
    path = tmp_path / "checkpoint.key"
    path.write_text("too short\n")
    with pytest.raises(SettingsError, match=rf"WF_CHECKPOINT_KEY_FILE \({path}\) must hold at least 32 bytes .*found 9"):
        checkpoint_key(load_settings({"WF_CHECKPOINT_KEY_FILE": str(path)}))


def test_the_default_key_file_is_in_the_users_config_folder():
    assert load_settings({}).checkpoint_key_file == "~/.config/watchfloor/checkpoint.key"


def test_a_detection_worker_runs_the_whole_stage_unless_told_otherwise():
    s = load_settings({})
    assert s.detection_parts == ("surge", "feed", "anomaly", "forecaster") and s.detection_set == ""


def test_detection_parts_are_read_in_the_stages_order_whatever_their_order_in_the_variable():
    s = load_settings({"WF_ROLES": "detect", "WF_DETECTION_PARTS": "anomaly, feed"})
    assert s.detection_parts == ("feed", "anomaly") and s.detection_set == "feed_anomaly"


@pytest.mark.parametrize("text", ["surges", "", " , ", "surge,forecast"])
def test_an_unknown_detection_part_or_an_empty_list_is_refused_naming_the_variable(text):
    with pytest.raises(SettingsError, match="^WF_DETECTION_PARTS: .*(unknown detection part|at least one part)"):
        load_settings({"WF_ROLES": "detect", "WF_DETECTION_PARTS": text})


def test_a_share_of_the_detection_stage_on_a_worker_that_also_counts_is_refused():
    with pytest.raises(SettingsError, match="WF_DETECTION_PARTS .*only a detect-only worker runs.*WF_ROLES=detect"):
        load_settings({"WF_DETECTION_PARTS": "surge"})
