"""The exact tier in memory: the hot entries' answers by request, bounded by bytes, least
recently used first out. The store stays the truth: a request not held here is read from
it, and what the cache removes, evicts or replaces leaves here at once.

An entry is held at most `max_age_s` before it is read from the store again, so that a
change made by another process (another worker, a command-line tool) reaches this one
within that time. Expiry is checked on every hit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")
# (tenant, namespace, request hash, model family): what the exact tier looks up by.
ExactKey = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class _Held(Generic[V]):
    entry_id: int
    value: V
    expires_at: float | None
    size: int
    read_at: float  # monotonic


class HotEntries(Generic[V]):
    """Used from one event loop (no locks): lookups, and the invalidations of its cache."""

    def __init__(
        self,
        max_bytes: int,
        max_age_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._held: OrderedDict[ExactKey, _Held[V]] = OrderedDict()
        self._keys: dict[int, ExactKey] = {}  # entry id -> its key here
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: ExactKey, now: float) -> V | None:
        """The held answer of `key`, if live and read from the store recently enough (one
        read longer ago stays `known` until it is read again)."""
        held = self._held.get(key)
        if held is None:
            return None
        if held.expires_at is not None and held.expires_at <= now:
            self._drop(key)
            return None
        if self._clock() - held.read_at > self.max_age_s:
            return None
        self._held.move_to_end(key)
        return held.value

    def known(self, key: ExactKey) -> bool:
        """Whether `key` had an answer when last read: worth reading from the store again."""
        return key in self._held

    def put(
        self, key: ExactKey, entry_id: int, value: V, expires_at: float | None, size: int
    ) -> None:
        """Hold `value` (about `size` bytes) as `key`'s answer; one too large is not held."""
        self._drop(key)
        if size > self.max_bytes:
            return
        previous = self._keys.get(entry_id)
        if previous is not None:
            self._drop(previous)
        self._held[key] = _Held(entry_id, value, expires_at, size, self._clock())
        self._keys[entry_id] = key
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._held)))

    def extend(self, entry_id: int, expires_at: float | None) -> None:
        """A sliding TTL moved the entry's expiry."""
        key = self._keys.get(entry_id)
        if key is not None:
            held = self._held[key]
            self._held[key] = _Held(entry_id, held.value, expires_at, held.size, held.read_at)

    def forget(self, key: ExactKey) -> None:
        """A newer entry answers `key`: read it from the store next time."""
        self._drop(key)

    def forget_entries(self, entry_ids: Iterable[int]) -> None:
        for entry_id in entry_ids:
            key = self._keys.get(entry_id)
            if key is not None:
                self._drop(key)

    def clear(self) -> None:
        self._held.clear()
        self._keys.clear()
        self.bytes = 0

    def _drop(self, key: ExactKey) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self.bytes -= held.size
            if self._keys.get(held.entry_id) == key:
                del self._keys[held.entry_id]
