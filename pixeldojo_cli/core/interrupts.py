"""What an interruption (Ctrl-C, SIGTERM) must know, kept where a signal handler
can reach it without waiting for anything.

- the command that resumes the work (`set_resume_hint`), printed even when a
  second Ctrl-C ends the process at once;
- the hidden `.part` files being written (`register_part`), removed on any
  interruption so none is left behind;
- which signal arrived (`note_signal`): SIGTERM exits 143, SIGINT 130, and
  downloads running in any thread stop when they see it (`stop_requested`).

Standard library only and no locks: a signal handler runs between two
bytecodes of the main thread, which may hold any lock at that moment. Adding
to and removing from a set are atomic under the GIL.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

INTERRUPTED_EXIT = 130  # 128 + SIGINT, the shell's convention
TERMINATED_EXIT = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancelling a step, `timeout`, a container stop). A subclass of
    KeyboardInterrupt so that every Ctrl-C path handles it the same way."""


_hint: str | None = None
_parts: set[str] = set()
_downloading: dict[str, int] = {}  # job id -> downloads of it in flight
_signal: int | None = None
_terminated = False


def set_resume_hint(text: str | None) -> str | None:
    """The line that tells the user how to pick the work up again (e.g.
    `Resume with: pixeldojo jobs wait job_1`); None clears it. Returns the one
    it replaces."""
    global _hint
    before, _hint = _hint, text
    return before


def resume_hint() -> str | None:
    """The hint set last, else one naming the jobs whose downloads are in flight."""
    if _hint:
        return _hint
    ids = [job_id for job_id, count in list(_downloading.items()) if count > 0]
    return f"Resume with: pixeldojo download {' '.join(ids)}" if ids else None


def downloading(job_id: str, delta: int) -> None:
    """Count a download of `job_id` starting (+1) or ending (-1)."""
    count = _downloading.get(job_id, 0) + delta
    if count > 0:
        _downloading[job_id] = count
    else:
        _downloading.pop(job_id, None)


def register_part(path: str | os.PathLike[str]) -> None:
    """A hidden temporary file this process is writing: removed if interrupted."""
    _parts.add(os.fspath(path))


def unregister_part(path: str | os.PathLike[str]) -> None:
    _parts.discard(os.fspath(path))


def remove_parts() -> int:
    """Delete every registered temporary file; returns how many were removed."""
    removed = 0
    for path in list(_parts):
        _parts.discard(path)
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def note_signal(signum: int) -> None:
    """Remember that `signum` arrived: work in other threads stops when it sees it."""
    global _signal, _terminated
    _signal = signum
    if signum == signal.SIGTERM:
        _terminated = True


def received_signal() -> int | None:
    return _signal


def stop_requested() -> bool:
    """Whether an interruption arrived: long work in any thread should stop."""
    return _signal is not None


def request_stop() -> None:
    """Ask every download in flight to stop (as Ctrl-C does), from any thread."""
    note_signal(signal.SIGINT if _signal is None else _signal)


def exit_code() -> int:
    """130 after Ctrl-C, 143 once SIGTERM has arrived."""
    return TERMINATED_EXIT if _terminated else INTERRUPTED_EXIT


def reset() -> None:
    """Forget every interruption, hint and file (tests; a long-lived library user)."""
    global _hint, _signal, _terminated
    _hint, _signal, _terminated = None, None, False
    _parts.clear()
    _downloading.clear()


def wait_for_interrupt(until: Callable[[], bool] | None = None) -> None:
    """Block the calling (main) thread until Ctrl-C or SIGTERM raises in it, or
    until `until()` turns true (checked every half second).

    In short waits, not one unbounded one: a signal that lands while another
    thread is starting a process (`webhook listen --exec`) was seen to leave an
    unbounded `Event.wait()` blocked with its handler never run."""
    import threading

    never = threading.Event()
    while not never.wait(0.5):
        if until is not None and until():
            return
