"""The worker's log does not open with an ERROR: aiokafka's expected "coordinator not available" is INFO while the group forms."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError, NodeNotReadyError

from streams.faustext import startup_log
from streams.faustext.startup_log import COORDINATOR_LOGGER, DISCOVERED, LOOKUP_FAILED, quiet_expected_startup_errors


@pytest.fixture
def coordinator_log(caplog):
    """aiokafka's coordinator logger at INFO with a fresh filter on it; the filter is taken off afterwards."""
    startup_log.unquiet()
    caplog.set_level(logging.INFO, logger=COORDINATOR_LOGGER)
    quiet_expected_startup_errors()
    try:
        yield logging.getLogger(COORDINATOR_LOGGER), caplog
    finally:
        startup_log.unquiet()


def _levels(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == COORDINATOR_LOGGER]


def test_coordinator_not_available_before_the_coordinator_is_found_is_info_and_says_why(coordinator_log):
    logger, caplog = coordinator_log
    logger.error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
    [(level, message)] = _levels(caplog)
    assert level == "INFO"
    assert "GroupCoordinatorNotAvailableError" in message and "expected while the consumer group forms" in message


def test_after_the_coordinator_is_found_the_same_failure_is_an_error_again(coordinator_log):
    logger, caplog = coordinator_log
    logger.error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
    logger.info(DISCOVERED, 1, "wf-group")
    logger.error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
    assert [level for level, _ in _levels(caplog)] == ["INFO", "INFO", "ERROR"]


def test_other_failures_of_the_lookup_and_other_errors_stay_errors(coordinator_log):
    logger, caplog = coordinator_log
    logger.error(LOOKUP_FAILED, NodeNotReadyError("node 1"))  # a broker that does not answer: not expected
    logger.error("Heartbeat failed: %r", GroupCoordinatorNotAvailableError())
    logger.warning(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
    assert [level for level, _ in _levels(caplog)] == ["ERROR", "ERROR", "WARNING"]


def test_the_filter_goes_on_once_and_comes_off(coordinator_log):
    logger, _ = coordinator_log
    first = quiet_expected_startup_errors()
    assert quiet_expected_startup_errors() is first
    assert [f for f in logger.filters if isinstance(f, startup_log.ExpectedStartupErrors)] == [first]
    startup_log.unquiet()
    assert not [f for f in logger.filters if isinstance(f, startup_log.ExpectedStartupErrors)]


def test_a_logger_that_shows_no_info_drops_the_lowered_record(caplog):
    startup_log.unquiet()
    caplog.set_level(logging.WARNING, logger=COORDINATOR_LOGGER)
    quiet_expected_startup_errors()
    try:
        logging.getLogger(COORDINATOR_LOGGER).error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
        assert _levels(caplog) == []
    finally:
        startup_log.unquiet()
