"""PostgreSQL LISTEN for the change log: a thread holds one connection listening on the
change channel and wakes the event loop at every notification. A lost connection is
opened again (with a wake-up, so that the follower catches up by its watermark: nothing
logged while it was away is missed). Other databases have no listener; the follower polls.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy.engine import Engine

from gateway.store.changes import CHANNEL

logger = logging.getLogger(__name__)
RETRY_S = 1.0
POLL_S = 0.1  # how soon a stop is noticed while no notification comes


class ChangeListener:
    """Sets `woken` (an asyncio.Event of `loop`) whenever another process logs a change."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.woken = asyncio.Event()
        self._loop = loop
        self._url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="change-listener", daemon=True)

    @staticmethod
    def supported(engine: Engine) -> bool:
        return engine.dialect.name == "postgresql"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.woken.set)
        except RuntimeError:  # the loop closed: the gateway is stopping
            self._stopping.set()

    def _listen(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._wake()  # (re)connected: catch up on what was missed
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=POLL_S, stop_after=64):
                            self._wake()
            except Exception as exc:  # the database went away: try again
                if not self._stopping.is_set():
                    logger.warning("change listener lost its connection (%s); retrying", exc)
                    self._stopping.wait(RETRY_S)
