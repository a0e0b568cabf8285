"""The event journal: request events on local disk until they are in the store.

Events are written to the store in batches, off the request path. Each one is first
appended to the current segment file, a plain write that survives the process being killed
(it is in the kernel's cache at once). A batch closes its segment, commits its events with
the segment's name, then deletes the file; at start, segments left by a crash are replayed,
and those whose name is already in the store are only deleted. So a crash loses no event and
writes none twice. A power cut can still lose the last moments: events are not fsynced, as
they record what happened and acknowledge nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

logger = logging.getLogger(__name__)


class Journal:
    """Segments in `directory`. Use from one thread (the event loop's) except `read` and
    `remove`, which touch only closed segments."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._sequence = 0

    def leftover(self) -> list[Path]:
        """Segments not yet removed, oldest first: a crash left them (call before appending)."""
        return sorted(self.directory.glob("*.jsonl"))

    def append(self, item: Any) -> None:
        if self._file is None:
            self._sequence += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._sequence:06d}.jsonl"
            self._path = self.directory / name
            self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115 (kept open)
        # {"kind": ..., **fields}: orjson writes the dataclass itself, with no copy into a dict
        fields = orjson.dumps(item)
        kind = b'{"kind":"' + type(item).__name__.encode() + b'"'
        self._file.write(kind + (b"," if fields != b"{}" else b"") + fields[1:] + b"\n")

    def rotate(self) -> Path | None:
        """Close the current segment and return it (None if nothing was appended); later
        appends start a new one."""
        if self._file is None:
            return None
        self._file.close()
        path, self._file, self._path = self._path, None, None
        return path

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any]]:
        """The records of a closed segment; a last line cut short by a crash is skipped."""
        for line in path.read_bytes().splitlines():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                logger.warning("skipped a partial line in the event journal %s", path.name)

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
