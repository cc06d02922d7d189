"""`pixeldojo api POST models/ID/run`: a paid request sent by hand, still under
the budgets and still in the ledger.

Whatever way the path is spelled (relative, `/api/v1/...`, absolute, escaped,
with a final `/`), once it names a model's `run` route and the method could
create a job, the job's cost is checked and reserved (`budget_hold`) before
the request, and the job the answer names is recorded as `run` records one.
The answer itself is handed back untouched: `api` prints it as received.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pixeldojo_cli.core.errors import PixelDojoError, SubmissionUncertainError
from pixeldojo_cli.engine.budget import Budget, budget_hold
from pixeldojo_cli.engine.submission import Submission

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.core.errors import ApiResponse
    from pixeldojo_cli.engine.recorder import Recorder

# Methods that could make the API create (and charge) a job at a `run` route.
PAID_METHODS = frozenset({"POST", "PUT", "PATCH"})


def run_route_model(client: Client, method: str, path: str) -> str | None:
    """The model id when `method path` is a request to `models/{id}/run` that
    could create a job (case and escaping aside, as a lenient server may read
    it), else None. A path the client refuses is left to the request to refuse."""
    if method.upper() not in PAID_METHODS:
        return None
    try:
        url = client.transport.request_url(path)
    except PixelDojoError:
        return None
    base = unquote(client.transport.base_url.path)
    full = unquote(url.path)
    if not full.startswith(base):
        return None
    words = [word for word in full[len(base) :].split("/") if word not in ("", ".")]
    if len(words) == 3 and words[0].lower() == "models" and words[2].lower() == "run":
        return words[1]
    return None


def send_run(
    client: Client,
    model_id: str,
    body: Any,
    send: Callable[[], ApiResponse],
    *,
    recorder: Recorder | None,
    budget: Budget | None,
) -> ApiResponse:
    """Check and reserve the job's cost under `budget`, `send()` the request,
    and record the job its answer names. An error answer raises as `send` raised
    it; an answer that names no job keeps the reservation (it may have been
    taken)."""
    submission = _submission(client, model_id, body, budget)
    with budget_hold(budget, submission, recorder) as hold:
        hold.sending()
        response = send()
        job = _job_in(response)
        if job is None:
            hold.failed(SubmissionUncertainError("The answer names no job."))
        else:
            hold.submitted(job)
    if job is not None and recorder is not None:
        recorder.submitted(job, submission)
    return response


def _submission(client: Client, model_id: str, body: Any, budget: Budget | None) -> Submission:
    """The request as the budget and the ledger see it. The model's price and
    schema are asked for only under a budget (its estimate, else listed cost;
    unknown when the model cannot be read: then the budget refuses)."""
    inputs = dict(body) if isinstance(body, dict) else {}
    if budget is None or (budget.max_credits is None and not budget.has_windows):
        return Submission(model_id, inputs, Path("."))
    from pixeldojo_cli.inputs.schema import estimate_cost

    try:
        model, schema = client.model_with_schema(model_id)
    except PixelDojoError:
        return Submission(model_id, inputs, Path("."))
    estimate = estimate_cost(model, schema, inputs) if isinstance(body, dict) else None
    return Submission(model_id, inputs, Path("."), estimate, listed_cost=model.cost.default)


def _job_in(response: ApiResponse) -> Job | None:
    """The job a submit answer names, or None when it names none."""
    from pixeldojo_cli.api.results import parse_job
    from pixeldojo_cli.core.untrusted import loads

    try:
        return parse_job(loads(response.body.decode("utf-8")))
    except (PixelDojoError, ValueError, UnicodeDecodeError):
        return None
