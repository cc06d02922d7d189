"""Downloads in flight: the threads of one `download_outputs` call, stopped at once.

The threads are daemons the caller never waits on for more than `STOP_GRACE`:
on Ctrl-C (or a stop asked for from another thread, or `interrupts.request_stop()`)
their connections are shut from the calling thread, which wakes a thread
blocked reading one, and this call's `.part` files are removed.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pixeldojo_cli.core import interrupts
from pixeldojo_cli.store.files import DownloadedFile

# How long the caller waits for download threads to notice an interruption.
STOP_GRACE = 1.0


@dataclass
class Flight:
    """What one `download_outputs` call has in flight, so that the calling thread
    can stop it at once: the connections (shut down, which wakes a thread blocked
    reading them) and the temporary files (removed)."""

    cancel: threading.Event = field(default_factory=threading.Event)
    streams: set[Any] = field(default_factory=set)
    parts: set[Path] = field(default_factory=set)

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep each new connection, so one stuck before
        the server sent a header can be shut too."""
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            self.streams.add(info["return_value"])

    def watch(self, response: httpx.Response) -> None:
        """Keep the connection a response came on, to be shut on a stop."""
        stream = response.extensions.get("network_stream")
        if stream is not None:
            self.streams.add(stream)

    def abort(self) -> None:
        """Shut every connection of this call (from any thread)."""
        self.cancel.set()
        for stream in list(self.streams):
            with contextlib.suppress(Exception):
                sock = stream.get_extra_info("socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)

    def remove_parts(self) -> None:
        """Remove this call's temporary files (from any thread)."""
        for path in list(self.parts):
            self.parts.discard(path)
            interrupts.unregister_part(path)
            path.unlink(missing_ok=True)

    def stopped(self) -> bool:
        """The caller cancelled, or Ctrl-C (or SIGTERM) asked every download to stop."""
        return self.cancel.is_set() or interrupts.stop_requested()


def run_all(
    fetch_one: Callable[[int, str], DownloadedFile],
    todo: list[tuple[int, str]],
    concurrency: int,
    flight: Flight,
    saved: dict[int, DownloadedFile],
    on_saved: Callable[[int, DownloadedFile], None] | None,
) -> BaseException | None:
    """Fetch `todo` in daemon threads; collect in the calling thread. The caller
    never blocks on a thread stuck in a read: on Ctrl-C (or a stop requested
    from another thread) the connections are shut, the threads are given
    `STOP_GRACE` seconds, this call's temporary files are removed, and
    KeyboardInterrupt is raised. Returns the first failure, if any."""
    threads, results = _start_workers(fetch_one, todo, concurrency, flight)
    try:
        return _collect(results, len(todo), flight, saved, on_saved)
    except KeyboardInterrupt:
        flight.abort()
        deadline = time.monotonic() + STOP_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        flight.remove_parts()
        raise


# (output number, the file saved or what the attempt raised)
_Results = queue.SimpleQueue[tuple[int, DownloadedFile | BaseException]]


def _start_workers(
    fetch_one: Callable[[int, str], DownloadedFile],
    todo: list[tuple[int, str]],
    concurrency: int,
    flight: Flight,
) -> tuple[list[threading.Thread], _Results]:
    """Daemon threads taking `todo` in turn until it is done or the flight stops;
    each outcome (a file, or what was raised) goes to the queue returned."""
    work: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
    for item in todo:
        work.put(item)
    results: _Results = queue.SimpleQueue()

    def worker() -> None:
        while not flight.stopped():
            try:
                n, url = work.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((n, fetch_one(n, url)))
            except BaseException as exc:  # handed to the calling thread
                results.put((n, exc))

    # Each thread runs in a copy of the caller's context: a deadline in force
    # (`core.deadlines`) holds for the downloads too.
    threads = [
        threading.Thread(
            target=contextvars.copy_context().run, args=(worker,), name="download", daemon=True
        )
        for _ in range(max(1, min(concurrency, len(todo))))
    ]
    for thread in threads:
        thread.start()
    return threads, results


def _collect(
    results: _Results,
    left: int,
    flight: Flight,
    saved: dict[int, DownloadedFile],
    on_saved: Callable[[int, DownloadedFile], None] | None,
) -> BaseException | None:
    """Take `left` outcomes as they come, each file into `saved` and `on_saved`;
    the first failure is returned. KeyboardInterrupt once the flight stops."""
    failure: BaseException | None = None
    while left:
        try:
            n, outcome = results.get(timeout=0.1)
        except queue.Empty:
            if flight.stopped():  # Ctrl-C elsewhere, or the caller's cancel
                raise KeyboardInterrupt from None
            continue
        left -= 1
        if isinstance(outcome, BaseException):
            failure = failure or outcome
            continue
        saved[n] = outcome
        if on_saved is not None:
            on_saved(n, outcome)
    if flight.stopped():  # stopped from outside: as if Ctrl-C had been pressed here
        raise KeyboardInterrupt
    return failure
