"""The hidden temporary file a download streams into, and its writer threads.

`PartFile` is made in the destination folder (`.<stem>.<random>.part`) and
renamed to its final name only by `commit`, after a flush and an fsync: a
crash before then leaves the `.part` file (removed by the next download in
that folder once stale), never a partial file under a final name.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

from pixeldojo_cli.core.errors import WriteError
from pixeldojo_cli.store.files import DownloadedFile, file_sha256, set_output_mode


class ChunkWorker:
    """A helper thread that applies `work` to each chunk handed to it, in order.

    The queue's bound keeps memory flat whatever the file's size. The first
    OSError stops the work and is kept for the caller to raise.
    """

    _STOP = object()

    def __init__(self, name: str, work: Callable[[bytes], object]) -> None:
        self._work = work
        self.error: OSError | None = None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
            elif isinstance(item, bytes) and self.error is None:
                try:
                    self._work(item)
                except OSError as exc:
                    self.error = exc

    def put(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def settled(self) -> threading.Event:
        """An event set once every chunk handed over so far has been worked."""
        done = threading.Event()
        self._queue.put(done)
        return done

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()


class PartFile:
    """The hidden temporary file a download streams into.

    Writing, and hashing when asked for, each run in their own helper thread,
    so both overlap with reading the socket (each releases the GIL). On 2
    cores this took 1 GiB from 0.91 s to 0.74 s against one thread doing both.
    """

    def __init__(self, folder: Path, stem: str, *, checksum: bool) -> None:
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".part")
        except OSError as exc:
            raise WriteError(f"Cannot write in {folder}: {exc.strerror or exc}.") from exc
        self.path = Path(name)
        self.stem = stem
        self.handle: IO[bytes] = os.fdopen(fd, "wb")
        self.size = 0
        # Once `rewrite` changed it: (size, SHA-256) as served, and the SHA-256 as saved.
        # Both SHA-256s are kept whatever `checksum` says: the file is read and
        # written whole for the rewrite anyway, and the sidecar says what changed.
        self.served: tuple[int, str] | None = None
        self.saved_sha256: str | None = None
        self.hasher = hashlib.sha256()
        self._workers = [ChunkWorker("download-writer", self.handle.write)]
        if checksum:
            hashing = ChunkWorker("download-hasher", lambda chunk: self.hasher.update(chunk))
            self._workers.append(hashing)
        self.checksum = checksum

    def _raise_if_failed(self) -> None:
        error = self._workers[0].error
        if error is not None:
            raise WriteError(f"Cannot write {self.path.name}: {error.strerror or error}.")

    def _settle(self) -> None:
        """Wait until every handed-over chunk is written (and hashed)."""
        for done in [worker.settled() for worker in self._workers]:
            done.wait()
        self._raise_if_failed()

    def restart(self) -> None:
        self._settle()
        self.handle.seek(0)
        self.handle.truncate()
        self.size = 0
        self.hasher = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self._raise_if_failed()
        for worker in self._workers:
            worker.put(chunk)
        self.size += len(chunk)

    def rewrite(self, transform: Callable[[BinaryIO, BinaryIO, int], bool]) -> bool:
        """Replace the whole file by what `transform(source, target, size)`
        writes (say, the picture with metadata in it), under the same name;
        nothing changes when it says False. The size as served is kept for
        `commit`, and with `checksum` the SHA-256 as served and as saved."""
        self._settle()
        try:
            self.handle.flush()
            fd, name = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.stem}.", suffix=".part"
            )
        except OSError as exc:
            raise WriteError(f"Cannot write in {self.path.parent}: {exc.strerror or exc}.") from exc
        target = _Hashing(os.fdopen(fd, "w+b"), hashing=True)
        done = False
        try:
            served_sha256 = self.hasher.hexdigest() if self.checksum else file_sha256(self.path)
            with open(self.path, "rb") as source:
                done = transform(source, target, self.size)  # type: ignore[arg-type]
            if done:
                os.replace(name, self.path)
        except OSError as exc:
            raise WriteError(f"Cannot write {self.path.name}: {exc.strerror or exc}.") from exc
        finally:
            if not done:
                target.handle.close()
                Path(name).unlink(missing_ok=True)
        if not done:
            return False
        self.handle.close()
        self.handle = target.handle
        self.served = (self.size, served_sha256)
        self.size = target.size
        self.saved_sha256 = target.hasher.hexdigest()
        return True

    def commit(self, final: Path) -> DownloadedFile:
        """Flush, rename into place, and say what landed."""
        self._settle()
        try:  # a full disk may only show itself at flush or fsync
            self.handle.flush()
            os.fsync(self.handle.fileno())
            set_output_mode(self.handle.fileno())
            self.handle.close()
            # A link planted at `final` is replaced by the rename, never written through.
            os.replace(self.path, final)
            mtime_ns = final.stat().st_mtime_ns
        except OSError as exc:
            raise WriteError(f"Cannot write {final.name}: {exc.strerror or exc}.") from exc
        if self.served is not None:
            return DownloadedFile(
                path=final,
                size=self.size,
                sha256=self.saved_sha256 if self.checksum else None,
                url="",
                mtime_ns=mtime_ns,
                served_size=self.served[0],
                served_sha256=self.served[1],
                saved_sha256=self.saved_sha256,
            )
        return DownloadedFile(
            path=final,
            size=self.size,
            sha256=self.hasher.hexdigest() if self.checksum else None,
            url="",
            mtime_ns=mtime_ns,
        )

    def discard(self) -> None:
        for worker in self._workers:
            worker.stop()
        if not self.handle.closed:
            self.handle.close()
        self.path.unlink(missing_ok=True)


class _Hashing:
    """A file being written, its size counted (and with `hashing`, its SHA-256)."""

    def __init__(self, handle: IO[bytes], *, hashing: bool) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.hashing = hashing
        self.size = 0

    def write(self, data: bytes) -> int:
        if self.hashing:
            self.hasher.update(data)
        self.size += len(data)
        return self.handle.write(data)
