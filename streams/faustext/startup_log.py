"""The worker's log without the ERROR aiokafka writes at every start: the group coordinator is not known yet.

A consumer that joins a group asks a broker which one coordinates it. Just
after the group's first member asks (or the broker starts), Kafka answers
``COORDINATOR_NOT_AVAILABLE`` while it loads the group's offsets partition;
aiokafka logs that answer as an ERROR ("Group Coordinator Request failed:
[Error 15] GroupCoordinatorNotAvailableError"), waits ``retry_backoff_ms`` and
asks again, and a tenth of a second later logs "Discovered coordinator". Every
worker's log opened with that ERROR.

:class:`ExpectedStartupErrors` logs exactly those records at INFO, with the
reason, until the coordinator is first discovered; after that they are
ERRORs again (a coordinator lost later is worth an operator's look), and every
other record, that one's other causes (a broker that does not answer) included,
is left as it is.
"""

from __future__ import annotations

import logging

#: The logger aiokafka's group coordinator writes to.
COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
#: aiokafka 0.14's formats of the lookup's failure and of its success (``ensure_coordinator_known``).
LOOKUP_FAILED = "Group Coordinator Request failed: %s"
DISCOVERED = "Discovered coordinator %s for group %s"


class ExpectedStartupErrors(logging.Filter):
    """A filter for aiokafka's coordinator logger: the expected "coordinator not available" at INFO while the group forms.

    >>> from aiokafka.errors import GroupCoordinatorNotAvailableError
    >>> quiet = ExpectedStartupErrors()
    >>> def record(level, msg, *args):
    ...     return logging.LogRecord(COORDINATOR_LOGGER, level, __file__, 1, msg, args, None)
    >>> early = record(logging.ERROR, LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
    >>> _ = quiet.filter(early)  # kept if the logger shows INFO
    >>> early.levelname
    'INFO'
    >>> quiet.filter(record(logging.INFO, DISCOVERED, 1, "wf"))
    True
    >>> late = record(logging.ERROR, LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
    >>> quiet.filter(late), late.levelname
    (True, 'ERROR')
    """

    def __init__(self) -> None:
        super().__init__()
        #: True until the coordinator is first discovered.
        self.forming = True

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; lower the expected one to INFO while the group forms (drop it if the logger does not show INFO)."""
        if not self.forming:
            return True
        if record.msg == DISCOVERED:
            self.forming = False
            return True
        if record.levelno >= logging.ERROR and record.msg == LOOKUP_FAILED and _coordinator_not_available(record.args):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.msg = LOOKUP_FAILED + " (expected while the consumer group forms; retrying)"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def _coordinator_not_available(args: object) -> bool:
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    return isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], GroupCoordinatorNotAvailableError)


def quiet_expected_startup_errors() -> ExpectedStartupErrors:
    """Put an :class:`ExpectedStartupErrors` on aiokafka's coordinator logger (once; later calls return it); call before the app starts."""
    logger = logging.getLogger(COORDINATOR_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, ExpectedStartupErrors):
            return existing
    quiet = ExpectedStartupErrors()
    logger.addFilter(quiet)
    return quiet


def unquiet() -> None:
    """Take every :class:`ExpectedStartupErrors` off aiokafka's coordinator logger."""
    logger = logging.getLogger(COORDINATOR_LOGGER)
    for existing in [f for f in logger.filters if isinstance(f, ExpectedStartupErrors)]:
        logger.removeFilter(existing)
