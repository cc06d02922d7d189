"""The job workflow, with no user interface: follow jobs, save their outputs,
record them in the ledger, and say how each one ended.

Every command (`run`, `jobs wait`, `download`, `download --pending`, `webhook
listen`) and `run --batch` are built on these pieces; none re-codes them:

- `resolve_options()` turns flags and `Settings` into frozen `WaitOptions` and
  `SaveOptions`: the only home of "flag > environment > config > default" for
  waiting and saving.
- `Follower` / `follow()` watch one or many jobs under one deadline, each on its
  own poll schedule, with the list endpoint when several are due at once;
  `wait()` yields one job's states until it ends (for library users).
- `save()` downloads a completed job's outputs, keeps intact files, records
  each file in the ledger as it lands and writes the `<jobId>.json` sidecar.
- `prepare()` turns one job as asked (`JobAsk`) into a checked, priced
  `Submission` before anything is spent.
- `submit()` sends one `Submission` (the model, its inputs, where its outputs
  go, what it should cost) and records it before any waiting starts; given a
  `Budget` (daily and monthly budgets, `--max-credits`), it checks and reserves
  the job's cost first, across processes (`engine/budget.py`).
- `conclude()` turns how a job's wait ended (the job, or the error) into a
  `JobResult` with a typed `Outcome`; `errors.combined_exit_code()` turns many
  into one.

Progress leaves as events (`JobSeen`, `FileProgress`, `Notice`) through one
callback, so the CLI draws and a library user may ignore them. The ledger is
reached through `Recorder`, which never lets a ledger fault stop a paid job's
outputs from being saved.
"""

from pixeldojo_cli.engine.budget import Budget
from pixeldojo_cli.engine.events import Event, EventSink, FileProgress, JobSeen, Notice, ignore
from pixeldojo_cli.engine.following import (
    Follower,
    WaitEnd,
    default_schedule_for,
    follow,
    interrupted_waiting,
)
from pixeldojo_cli.engine.options import (
    DEFAULT_UNKNOWN_STATUS_TIMEOUT,
    LIST_LIMIT,
    JobFlags,
    SaveOptions,
    WaitOptions,
    resolve_options,
)
from pixeldojo_cli.engine.preparing import JobAsk, prepare
from pixeldojo_cli.engine.recorder import Recorder
from pixeldojo_cli.engine.saving import check_saveable, save
from pixeldojo_cli.engine.submission import Submission
from pixeldojo_cli.engine.waiting import wait
from pixeldojo_cli.engine.workflow import (
    JobResult,
    conclude,
    fetch_and_save,
    submit,
    sweep_pending,
    wait_and_save,
)

__all__ = [
    "DEFAULT_UNKNOWN_STATUS_TIMEOUT",
    "LIST_LIMIT",
    "Budget",
    "Event",
    "EventSink",
    "FileProgress",
    "Follower",
    "JobAsk",
    "JobFlags",
    "JobResult",
    "JobSeen",
    "Notice",
    "Recorder",
    "SaveOptions",
    "Submission",
    "WaitEnd",
    "WaitOptions",
    "check_saveable",
    "conclude",
    "default_schedule_for",
    "fetch_and_save",
    "follow",
    "ignore",
    "interrupted_waiting",
    "prepare",
    "resolve_options",
    "save",
    "submit",
    "sweep_pending",
    "wait",
    "wait_and_save",
]
