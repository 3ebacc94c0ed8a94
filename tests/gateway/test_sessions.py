"""The sessions' closes started from synchronous code are held until they are done (plain asyncio, no stack)."""

from __future__ import annotations

import asyncio
import gc

from gateway.protocol import CloseCode
from gateway.sessions import BackgroundTasks, closer


class SlowToClose:
    """A connection whose close handshake waits until the test lets it finish."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.closed: list[tuple[int, str]] = []

    async def close(self, code: int, reason: str) -> None:
        await self.finish.wait()
        self.closed.append((code, reason))


def test_a_spawned_task_is_held_until_it_is_done_then_let_go():
    """BackgroundTasks holds the task through a garbage collection while it waits, and drops it once it has finished."""

    async def scenario() -> None:
        background = BackgroundTasks()
        release = asyncio.Event()
        task = background.spawn(release.wait())
        gc.collect()
        assert task in background and len(background) == 1
        release.set()
        await task
        await asyncio.sleep(0)  # the done callbacks run on the next turn of the loop
        assert task not in background and len(background) == 0

    asyncio.run(scenario())


def test_a_client_close_keeps_its_close_handshake_alive_until_the_connection_is_closed():
    """The close a hub or a timer calls (synchronously) runs to the end though nobody awaits it: the session holds its task."""

    async def scenario() -> None:
        background = BackgroundTasks()
        connection = SlowToClose()
        close = closer(connection, background)  # type: ignore[arg-type]  # a stand-in with the one method closer uses
        close(CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new one")
        gc.collect()
        assert len(background) == 1, "the close task is not held while it waits"
        connection.finish.set()
        for _ in range(10):
            if not len(background):
                break
            await asyncio.sleep(0)
        assert connection.closed == [(CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new one")]
        assert len(background) == 0

    asyncio.run(scenario())
