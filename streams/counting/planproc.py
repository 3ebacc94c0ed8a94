"""The counting agent's planning in a process of its own: Faust's per-record work and ours on two cores.

Faust hands the counting agent its records one event at a time, and that
costs most of a core by itself; validating, reading the snapshot and
planning (:func:`streams.counting.planner.plan_batch`) cost nearly as much again. In
one process they take turns on one core. :class:`OffloadedState` is a
:class:`~streams.counting.state.RedisState` whose :meth:`~streams.counting.state.RedisState.apply`
sends each batch's raw records to a child process that validates, reads the
snapshot, plans and, when told to, commits, while the worker's own process
goes on taking the next batch from Faust. Nothing else changes: the worker
still publishes the dead letters and the detector input between planning and
committing, the commit is still the one Lua script with its offset check,
and every other call (the detectors' checkpoints, the alerts, the metrics)
runs in the worker's process as before. When the next batch already waits
(``take_next`` of :meth:`~streams.counting.state.RedisState.apply`), it goes with the
commit request: the child validates it while Redis runs the commit script and
plans it on what Redis holds after that commit, so the next :meth:`apply`
starts from a plan (:func:`commit_then_plan`).

The child is ``python -m streams.counting.planproc``, started on the first batch. It
talks over its stdin and stdout in frames (a 4-byte big-endian length, then a
pickle: both ends are this module), logs to stderr, and leaves when its stdin
closes or its parent dies. A Redis error in the child is raised again in the
worker as the same ``redis.exceptions`` class, so a batch waits out an
unreachable Redis as it did in-process. A child that died raises
:class:`PlanProcessDied` and the worker tries the batch again with a new one
(a child that died between batches is replaced on the next); one that
failed otherwise (a bug) raises :class:`PlanProcessError`, and the agent
crashes: the worker exits and its supervisor restarts it. Either way the
batch was not committed, or was committed whole (the Lua commit), and its
records are not acknowledged before.
``WF_PLAN_PROCESS=0`` keeps the planning in the worker's process.

At shutdown (:meth:`OffloadedState.close`, from the worker's
``on_before_shutdown``, while the committers still run) a plan the child
holds is committed first, within :data:`CLOSE_TIMEOUT_S`, and the child then
closed; what the committers ask after that is planned and committed in the
worker's process, as with ``WF_PLAN_PROCESS=0``, until the worker's stop
cancels them. A commit used to start a new child when the closed one held the
plan, and that child, which had planned nothing, failed the batch
(``commit asked for before any plan``) and crashed the stopping worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, BinaryIO

import redis.exceptions

from streams.counting.planner import Incoming, Plan, Snapshot, parse_batch
from streams.counting.state import RedisState, TakeNext
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
#: How long a closing worker waits for the child to leave before killing it.
CLOSE_TIMEOUT_S = 5.0


class PlanProcessError(RuntimeError):
    """The plan process failed on something other than Redis (a bug: the worker stops); the batch was not committed."""


class PlanProcessDied(PlanProcessError):
    """The plan process died (killed, out of memory) during a request; the batch was not committed.

    The next request starts a new one, so the worker tries the batch again.
    """


def redis_error_name(exc: redis.exceptions.RedisError) -> str:
    """The name of ``exc``'s nearest class in ``redis.exceptions``: the class the worker raises again.

    Errors defined elsewhere (redis-py's Sentinel ones) are sent as their base there, so that the worker
    still knows a primary it could not find (``MasterNotFoundError``) as a ``ConnectionError``: worth trying again.

    >>> from redis.sentinel import MasterNotFoundError
    >>> redis_error_name(MasterNotFoundError("no master")), redis_error_name(redis.exceptions.ReadOnlyError("x"))
    ('ConnectionError', 'ReadOnlyError')
    """
    for cls in type(exc).__mro__:
        if getattr(redis.exceptions, cls.__name__, None) is cls:
            return cls.__name__
    return "RedisError"


def die_with_parent() -> None:
    """In the plan process: be killed with the worker (Linux), so that no orphan writes to Redis
    after the worker was killed and restarted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the worker died before prctl
        os._exit(1)


class OffloadedState(RedisState):
    """A :class:`RedisState` that plans and commits each batch in the plan process (see the module's text)."""

    def __init__(self, client, settings: Settings) -> None:
        super().__init__(client, settings)
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        #: the next batch (the very list), its catching_up, and the child's plan for it, made after the last commit
        self._ahead: tuple[list[Incoming], frozenset[tuple[str, int]], tuple[Plan, dict]] | None = None
        #: batches planned ahead, and how many of those plans were used (the rest were planned again)
        self.planned_ahead = self.used_ahead = 0
        #: the plan the child holds for the next commit (the worker has it without its ops); set while it waits
        self._child_plan: Plan | None = None
        self._child_free = asyncio.Event()
        self._child_free.set()
        #: set by :meth:`close`: no new plan goes to the child; the last plan made here (not in the child)
        self._closing = False
        self._here_plan: Plan | None = None

    async def _plan_once(
        self,
        batch: list[Incoming],
        check_snapshot: Callable[[Snapshot], Awaitable[None]] | None = None,
        catching_up: frozenset[tuple[str, int]] = frozenset(),
    ) -> tuple[Plan, Snapshot]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is batch and ahead[1] == catching_up:
            # planned while the batch before committed, on what Redis held after that commit
            plan, offsets = ahead[2]
            self.used_ahead += 1
        elif self._closing:
            # the worker is stopping: nothing more for the child, which is closing or gone
            self._hold(None)
            plan, snap = await super()._plan_once(batch, check_snapshot, catching_up)
            self._here_plan = plan
            return plan, snap
        else:
            self._hold(None)
            plan, offsets = await self._call(("plan", _records(batch), catching_up))
        # held from the child's reply on, with no wait in between: close() must see it (apply commits
        # nothing without offsets, so such a plan is not waited for)
        self._hold(plan if plan.offsets else None)
        snap = Snapshot(offsets=offsets)
        if check_snapshot is not None:
            try:
                await check_snapshot(snap)
            except BaseException:
                self._hold(None)  # abandoned: not committed
                raise
        return plan, snap

    async def _commit_plan(self, plan: Plan, snap: Snapshot, take_next: TakeNext | None = None) -> bool:
        # The child commits the plan it made last, on the snapshot it read for it; given
        # the next batch, it validates it while Redis runs the commit, then plans it.
        self._ahead = None
        if self._closing and plan is not self._child_plan:
            if plan is self._here_plan:
                return await super()._commit_plan(plan, snap)
            # close() stopped waiting for this commit (CLOSE_TIMEOUT_S) and closed the child, which held the plan
            log.warning("the plan process was closed before the batch it planned was committed: planning it again here")
            return False
        following = take_next() if take_next is not None and not self._closing else None
        try:
            if following is None:
                ok, _ = await self._call(("commit", None, frozenset()))
                self._hold(None)
                return ok
            batch, catching_up = following
            ok, planned = await self._call(("commit", _records(batch), catching_up))
        except BaseException:
            self._hold(None)  # the child keeps no plan after a failed request
            raise
        if planned is not None:
            self._ahead = (batch, catching_up, planned)
            self.planned_ahead += 1
        self._hold(planned[0] if planned is not None and planned[0].offsets else None)
        return ok

    def _hold(self, plan: Plan | None) -> None:
        """Note the plan the child holds for the next commit (None: none), which :meth:`close` waits for."""
        self._child_plan = plan
        if plan is None:
            self._child_free.set()
        else:
            self._child_free.clear()

    async def close(self) -> None:
        """Close the plan process, once the plan it holds (if any) is committed or :data:`CLOSE_TIMEOUT_S` passed.

        Requests after this are served in the worker's process (see the module's text).
        """
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT_S
        try:
            async with asyncio.timeout_at(deadline):
                async with self._lock:  # a request under way is answered first (its plan then held)
                    pass
                await self._child_free.wait()
        except TimeoutError:
            log.warning("closing the plan process with a batch planned and not committed after %.0f s", CLOSE_TIMEOUT_S)
        proc, self._proc = self._proc, None
        self._hold(None)
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), max(0.5, deadline - loop.time()))
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await super().close()

    async def _call(self, request: tuple):
        async with self._lock:
            proc = self._proc
            if proc is None or proc.returncode is not None:
                if proc is not None and request[0] == "commit":
                    self._proc = None
                    raise PlanProcessDied(
                        f"the plan process (pid {proc.pid}) died between planning and committing (exit code {proc.returncode})"
                    )
                proc = await self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                _write(proc.stdin, request)
                await proc.stdin.drain()
                n = _HEADER.unpack(await proc.stdout.readexactly(_HEADER.size))[0]
                kind, *value = pickle.loads(await proc.stdout.readexactly(n))  # our own child's frames
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                code = await _exit_code(proc)
                self._proc = None
                raise PlanProcessDied(f"the plan process (pid {proc.pid}) died ({exc!r}; exit code {code})") from exc
        if kind == "ok":
            return value[0]
        if kind == "redis":
            name, message = value
            raise getattr(redis.exceptions, name, redis.exceptions.RedisError)(message)
        raise PlanProcessError(f"the plan process failed:\n{value[0]}")

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.counting.planproc", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdin is not None
        _write(proc.stdin, self.settings)
        log.info("plan process started (pid %d)", proc.pid)
        self._proc = proc
        return proc


def _records(batch: list[Incoming]) -> list[tuple]:
    return [(r.kind, r.partition, r.offset, r.value) for r in batch]


def _write(stream: asyncio.StreamWriter | BinaryIO, obj: object) -> None:
    """One frame: a 4-byte big-endian length, then the pickle (the worker's pipe to the child, or the child's reply)."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)


async def _exit_code(proc: asyncio.subprocess.Process) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), 2.0)
    except TimeoutError:
        proc.kill()
        return None


# -- the child ----------------------------------------------------------------


def _read(stream: BinaryIO) -> Any:  # an unpickled frame (a request tuple or the settings), or None at the end
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    n = _HEADER.unpack(header)[0]
    body = stream.read(n)
    if len(body) < n:
        return None
    return pickle.loads(body)


async def commit_then_plan(
    state: RedisState, made: tuple[Plan, Snapshot], following: list[Incoming] | None, catching_up: frozenset[tuple[str, int]]
) -> tuple[bool, tuple[Plan, Snapshot] | None]:
    """Commit ``made``; then plan ``following`` (when given and the commit went through) on what Redis holds after it.

    ``following`` is validated while Redis runs the commit script: the script
    is sent on a connection of its own, the reply read after. A Redis error
    during the commit is raised (the batch was not committed, or was whole:
    the worker tries it again); one while planning ``following`` only leaves it
    unplanned (None), to be planned again by the worker's next request.
    """
    plan, snap = made
    if following is None:
        return await state._commit_plan(plan, snap), None
    pool = state.client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_command("EVALSHA", state._commit.sha, 0, *state.commit_args(plan, snap))
        parsed = parse_batch(following, state.config, now=time.time())
        try:
            ok = bool(await conn.read_response())
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts: load it, once
            ok = await state._commit_plan(plan, snap)
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
    if not ok:
        return False, None
    try:
        return True, await state._plan_parsed(following, parsed, catching_up=catching_up)
    except redis.exceptions.RedisError as exc:
        log.warning("planning the next batch ahead failed (it is planned again): %s", exc)
        return True, None


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer the worker's requests until ``inp`` closes.

    ``("plan", records, catching_up)``: plan a batch (the reply: the plan without
    its ops, and the offsets it was made on). ``("commit", records | None,
    catching_up)``: commit the plan made last; then plan ``records``, the batch
    after it, if given (the reply: whether the commit went through, and that
    plan or None).
    """
    settings = _read(inp)
    if not isinstance(settings, Settings):
        raise SystemExit("streams.counting.planproc: expected the worker's settings first; this module is started by the worker")
    loop = asyncio.new_event_loop()
    state = RedisState.from_settings(settings)
    made: tuple[Plan, Snapshot] | None = None
    try:
        while (request := _read(inp)) is not None:
            try:
                if request[0] == "plan":
                    batch = [Incoming(*r) for r in request[1]]
                    made = loop.run_until_complete(state._plan_once(batch, catching_up=request[2]))
                    plan, snap = made
                    reply: tuple = ("ok", (replace(plan, ops=[]), snap.offsets))
                elif request[0] == "commit":
                    if made is None:
                        raise RuntimeError("commit asked for before any plan")
                    following = [Incoming(*r) for r in request[1]] if request[1] is not None else None
                    to_commit, made = made, None
                    ok, made = loop.run_until_complete(commit_then_plan(state, to_commit, following, request[2]))
                    reply = ("ok", (ok, None if made is None else (replace(made[0], ops=[]), made[1].offsets)))
                else:
                    raise RuntimeError(f"unknown request {request[0]!r}")
            except redis.exceptions.RedisError as exc:
                made = None
                reply = ("redis", redis_error_name(exc), str(exc))
            except Exception:  # noqa: BLE001 -- reported to the worker, which crashes with it
                made = None
                reply = ("error", traceback.format_exc())
            _write(out, reply)
            out.flush()
    finally:
        loop.run_until_complete(state.close())
        loop.close()


def main() -> None:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="[plan process %(process)d] %(levelname)s %(name)s: %(message)s")
    # the protocol gets fd 1; anything printed goes to stderr instead
    with os.fdopen(os.dup(1), "wb") as out:
        os.dup2(2, 1)
        serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
