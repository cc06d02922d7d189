"""Receive the API's job webhooks and save each job's outputs, exactly once.

A small HTTP server (standard library only: no typer, no rich, no httpx here)
behind `pixeldojo webhook listen`, usable from Python too::

    with WebhookListener(client, save, port=8787) as listener:
        ...  # until the program stops; listener.stop(grace) hands back unsaved jobs

The API publishes no webhook signature, so a notification proves nothing. The
listener takes only a job id from it, answers at once (202), and a bounded pool
of workers then looks the job up through the API (`jobs.get_job`) and hands
that answer, never the notification, to `save`. A forged or replayed
notification can therefore neither plant a file nor send a download to another
host; at worst it costs one `GET /jobs/{id}`, and only once it has named the
listener's path, by default `/webhook/<random token>`. The HTTP side (whole
deadlines, caps per peer, no thread per connection) is `webhook_http.py`.
"""

from __future__ import annotations

import hmac
import queue
import re
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_to_bytes, urlsplit

from pixeldojo_cli.api.results import id_claims
from pixeldojo_cli.core.errors import PixelDojoError, WrongJobError
from pixeldojo_cli.core.untrusted import loads
from pixeldojo_cli.engine.webhook_http import (
    MAX_CONNECTIONS,
    MAX_PER_PEER,
    REQUEST_TIMEOUT,
    Answer,
    Head,
    RequestLoop,
    check_path,
)

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.engine import Recorder

# A job notification is a few kB; anything much larger is not one.
MAX_BODY = 256 * 1024
# After `stop`'s grace: how long a cancelled save may take to stop and clean up
# (the downloads' own bound, `store.flight.STOP_GRACE`, is 1 s).
CANCEL_WAIT = 3.0

SaveJob = Callable[["Job"], Sequence[Any]]
"""Saves a completed job's outputs (looked up through the API) and returns the
files: paths, or objects with a `path` (the engine's `DownloadedFile`)."""

OnOutcome = Callable[["Delivery"], None]

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+-]{0,199}")


class JobSource(Protocol):
    """What the listener needs from a client: one job, looked up through the API
    (a `Client` refuses an answer about another job; the listener checks again)."""

    def get_job(self, job_id: str) -> Job: ...


class JobBook(Protocol):
    """A record of jobs that outlives the listener (the ledger): what is saved
    already, and the jobs to keep for `pixeldojo download --pending`."""

    def is_saved(self, job_id: str) -> bool: ...

    def remember(self, job: Job) -> None: ...

    def knows(self, job_id: str) -> bool: ...


@dataclass(frozen=True)
class LedgerBook:
    """The job ledger (through the engine's `Recorder`) as a `JobBook`: jobs the
    API confirms are recorded with the folder they will be saved in."""

    recorder: Recorder
    folder: Path

    def is_saved(self, job_id: str) -> bool:
        return self.recorder.is_saved(job_id)

    def knows(self, job_id: str) -> bool:
        return self.recorder.knows(job_id)

    def remember(self, job: Job) -> None:
        self.recorder.adopt(job, self.folder)


@dataclass(frozen=True)
class Delivery:
    """What became of one notified job.

    `outcome` is one of: `saved` (its `files`), `skipped` (the book says it is
    saved already), `failed` (the job failed: nothing to save), `unfinished`
    (still running after `final_state_wait`), `error` (the lookup or the save
    failed: `error`), `handed_back` (the listener stopped before saving it).
    """

    job_id: str
    outcome: str
    files: tuple[Any, ...] = ()
    status: str | None = None
    error: PixelDojoError | None = None
    job: Job | None = None

    @property
    def paths(self) -> list[str]:
        """The saved files' paths, as text."""
        return [str(getattr(f, "path", f)) for f in self.files]


def _as_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if isinstance(value, str) and _JOB_ID.fullmatch(value.strip()):
        return value.strip()
    return None


def job_id_from_notification(body: Any) -> str | None:
    """The job id in a notification, wherever a sender put it: the first of
    `api.results.id_claims` (`jobId`, `job_id`..., then `job.jobId`,
    `data.jobId`, `data.job.id`..., then `id`: the one rule every answer about
    a job is checked by) that looks like a job id; None when there is none."""
    return next((found for claim in id_claims(body) if (found := _as_id(claim))), None)


class _Responder:
    """The listener's answers: only POST of JSON with a job id on its path, and
    the job queued (`offer`); nothing else is looked up."""

    def __init__(self, listener: WebhookListener) -> None:
        self.listener = listener
        self.ours = unquote_to_bytes(listener.path).rstrip(b"/")

    def _on_our_path(self, head: Head) -> bool:
        try:
            path = urlsplit(head.target).path
        except ValueError:
            return False
        # The target was read as latin-1: back to its bytes, %XX decoded as in `ours`.
        theirs = unquote_to_bytes(path.encode("latin-1", "replace")).rstrip(b"/")
        # Constant time: the default path holds the token a forged notification must guess.
        return hmac.compare_digest(theirs, self.ours)

    def check_head(self, head: Head) -> Answer | int:
        if not self._on_our_path(head):
            return Answer(404, {"error": "not found"})
        if head.method != "POST":
            return Answer(405, {"error": "only POST is accepted"}, {"Allow": "POST"})
        if "transfer-encoding" in head.headers:
            return Answer(411, {"error": "send a Content-Length"})
        kind = head.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != "application/json" and not kind.endswith("+json"):
            return Answer(415, {"error": "send application/json"})
        length = head.headers.get("content-length", "")
        if not length.isdigit() or not length.isascii():
            return Answer(411, {"error": "send a Content-Length"})
        if len(length) > 15 or int(length) > self.listener.max_body:
            return Answer(413, {"error": f"the body is larger than {self.listener.max_body} bytes"})
        return int(length)

    def answer(self, head: Head, body: bytes) -> Answer:
        try:
            document = loads(body)
        except ValueError:  # not JSON, not UTF-8, or nested past any notification
            return Answer(400, {"error": "the body is not JSON"})
        job_id = job_id_from_notification(document)
        if job_id is None:
            return Answer(400, {"error": "no job id in the notification"})
        status, answer = self.listener.offer(job_id)
        return Answer(status, answer, {"Retry-After": "5"} if status == 503 else {})


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The listen backlog: a burst of notifications is normal.
    return socket.create_server((host, port), family=family, backlog=128)


def random_path() -> str:
    """`/webhook/<token>`: about 128 random bits a forged notification must guess."""
    return f"/webhook/{secrets.token_urlsafe(16)}"


class WebhookListener:
    """Receives job notifications on `http://host:port/path` and saves each job once.

    `jobs.get_job` looks each job up (a `Client`); `save` saves a completed one
    and returns the paths; `on_outcome` hears about every job (from a worker
    thread). With a `book` (the ledger), jobs it says are saved are skipped,
    and every job the API confirms is recorded there before it is saved, so
    whatever is not saved when the listener stops is left for
    `pixeldojo download --pending`. At most `workers` jobs are looked up and
    saved at once, and at most `queue_size` wait; past that, 503.

    `path` defaults to `/webhook/` and a random token (see `url`); one given
    must pass `check_path` (else ValueError). Each request must arrive whole
    within `request_timeout` seconds; at `max_connections`, the connection
    idle longest is cut for a newcomer, first of addresses holding more than
    `max_per_peer` (see `webhook_http`). `serving` turns False should the
    server thread fail (`failure` says why).
    """

    def __init__(
        self,
        jobs: JobSource,
        save: SaveJob,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str | None = None,
        workers: int = 2,
        queue_size: int = 100,
        max_body: int = MAX_BODY,
        max_connections: int = MAX_CONNECTIONS,
        max_per_peer: int = MAX_PER_PEER,
        request_timeout: float = REQUEST_TIMEOUT,
        book: JobBook | None = None,
        on_outcome: OnOutcome | None = None,
        final_state_wait: float = 30.0,
        remember_done: int = 10_000,
        cancel: threading.Event | None = None,
    ) -> None:
        path = random_path() if path is None else path
        try:
            check_path(path)
        except ValueError as exc:
            raise ValueError(f"path {path[:60]!r}: {exc}") from None
        if min(workers, queue_size, max_connections, max_per_peer) < 1:
            raise ValueError("workers, queue_size and the connection caps must be at least 1")
        self.jobs = jobs
        self.save = save
        self.path = path
        self.max_body = max_body
        self.book = book
        self.on_outcome = on_outcome
        self.final_state_wait = final_state_wait
        self.cancel = cancel or threading.Event()
        self._remember_done = remember_done
        self._queue: queue.Queue[str] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}  # job id -> "queued" | "working"
        self._done: OrderedDict[str, None] = OrderedDict()
        self._handed_back: list[str] = []
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._abandoned = False
        self._stopped = False
        self._socket = _listening_socket(host, port)
        self._loop = RequestLoop(
            self._socket,
            _Responder(self),
            request_timeout=request_timeout,
            max_connections=max_connections,
            max_per_peer=max_per_peer,
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"webhook-worker-{n}", daemon=True)
            for n in range(workers)
        ]
        self._serving = threading.Thread(target=self._loop.run, name="webhook-server", daemon=True)

    @property
    def url(self) -> str:
        """Where to send notifications (give it as the job's `webhook_url`)."""
        address = self._socket.getsockname()
        host = str(address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{address[1]}{self.path}"

    @property
    def serving(self) -> bool:
        """Whether the server thread is answering (False before `start`, after
        `stop`, or once it failed)."""
        return self._serving.is_alive()

    @property
    def failure(self) -> BaseException | None:
        """What ended the server thread, if something other than `stop` did."""
        return self._loop.failure

    def start(self) -> WebhookListener:
        for thread in self._threads:
            thread.start()
        self._serving.start()
        return self

    def __enter__(self) -> WebhookListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- accepting ------------------------------------------------------------

    def offer(self, job_id: str) -> tuple[int, dict[str, Any]]:
        """Queue a notified job unless it is queued, being saved or saved already.
        Returns the HTTP status and body to answer with."""
        with self._lock:
            if self._stopping.is_set():
                return 503, {"error": "stopping"}
            if job_id in self._active or job_id in self._done:
                return 200, {"jobId": job_id, "queued": False, "duplicate": True}
            try:
                self._queue.put_nowait(job_id)
            except queue.Full:
                return 503, {"error": "too many jobs waiting"}
            self._active[job_id] = "queued"
        return 202, {"jobId": job_id, "queued": True}

    # --- working --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            with self._lock:
                if self._stopping.is_set():
                    self._handed_back.append(job_id)
                    self._active.pop(job_id, None)
                    continue
                self._active[job_id] = "working"
            outcome = self._process(job_id)
            with self._lock:
                self._active.pop(job_id, None)
                if outcome.outcome in ("saved", "skipped", "failed") or (
                    outcome.error is not None and outcome.error.code == "not_found"
                ):
                    self._done[job_id] = None
                    while len(self._done) > self._remember_done:
                        self._done.popitem(last=False)
                if self._abandoned:
                    return
            self._emit(outcome)

    def _emit(self, outcome: Delivery) -> None:
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(outcome)
        except Exception as exc:  # a reporting failure must not stop the worker
            sys.stderr.write(f"webhook listener: reporting {outcome.job_id} failed: {exc}\n")

    def _process(self, job_id: str) -> Delivery:
        try:
            if self.book is not None and self.book.is_saved(job_id):
                return Delivery(job_id, "skipped")
            job = self._look_up(job_id)
            if self.book is not None:
                self.book.remember(job)
            job = self._until_final(job)
            if job.failed or job.expired:
                reason = PixelDojoError(f"Job {job_id} {job.status}: {job.error or 'no reason'}.")
                reason.code = "job_failed"
                return Delivery(job_id, "failed", status=job.status, error=reason, job=job)
            if not job.succeeded:
                return Delivery(job_id, "unfinished", status=job.status, job=job)
            if self.book is not None:
                self.book.remember(job)
            files = tuple(self.save(job))
            return Delivery(job_id, "saved", files=files, status=job.status, job=job)
        except PixelDojoError as exc:
            return Delivery(job_id, "error", error=exc)
        except Exception as exc:  # a bug in `save` must not take the worker down
            bug = PixelDojoError(f"Unexpected error: {type(exc).__name__}: {exc}")
            bug.code = "unexpected"
            return Delivery(job_id, "error", error=bug)

    def _look_up(self, job_id: str) -> Job:
        """The notified job through the API; an answer about another job is
        refused (`WrongJobError`): nothing of it is saved or marked done."""
        job = self.jobs.get_job(job_id)
        if job.id != job_id:
            raise WrongJobError(job_id, job.id)
        return job

    def _until_final(self, job: Job) -> Job:
        """A notification may beat the job's own record: look again for a while."""
        deadline = time.monotonic() + self.final_state_wait
        delay = 1.0
        while not job.is_terminal:
            if time.monotonic() + delay > deadline or self._stopping.wait(delay):
                return job
            job = self._look_up(job.id)
            delay = min(delay * 2, 8.0)
        return job

    # --- stopping -------------------------------------------------------------

    def stop(self, grace: float = 30.0) -> list[str]:
        """Stop accepting, let the jobs being saved finish for up to `grace`
        seconds, and return the ids of the jobs left unsaved (queued, or still
        being saved). With a book, those it confirmed are recorded there.

        Past the grace (or once `hurry()` is called), `cancel` is set: a save
        that watches it (the engine's `save(cancel=)`) stops and removes its
        temporary files, which this waits for a moment longer; the jobs are
        handed back all the same."""
        with self._lock:
            first = not self._stopped
            self._stopped = True
            self._stopping.set()
        if first:
            self._loop.stop()
            if self._serving.is_alive():
                self._serving.join(5)
            else:  # never started
                self._loop.close()
        while True:
            try:
                job_id = self._queue.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._handed_back.append(job_id)
                self._active.pop(job_id, None)
        self._join_workers(max(0.0, grace))
        with self._lock:
            self._abandoned = True
            left = list(dict.fromkeys([*self._handed_back, *self._active]))
        if any(thread.is_alive() for thread in self._threads):
            self.cancel.set()
            self._join_workers(CANCEL_WAIT, hurried=False)
        return left

    def hurry(self) -> None:
        """Cut a `stop`'s grace short (from any thread, or a signal handler)."""
        self._hurry.set()

    def _join_workers(self, seconds: float, *, hurried: bool = True) -> None:
        deadline = time.monotonic() + seconds
        for thread in self._threads:
            while thread.is_alive() and not (hurried and self._hurry.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                thread.join(min(left, 0.1))
