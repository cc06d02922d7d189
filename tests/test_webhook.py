"""`webhook replay` tells the truth in its exit code."""

from __future__ import annotations

import json
from pathlib import Path

from pixeldojo_cli.core.errors import EXIT_CODES

from conftest import FAST, Invoke

NOBODY = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there


def test_a_replay_the_api_could_not_deliver_exits_10_and_says_why(cli: Invoke) -> None:
    path = cli("run", "flux-dev", "x", "--webhook-url", NOBODY, *FAST).stdout.strip()
    job_id = Path(path).name.rsplit("-", 1)[0]
    result = cli("webhook", "replay", job_id)
    assert result.exit_code == 10 == EXIT_CODES["webhook_failed"]
    assert result.stdout == ""
    assert f"could not deliver the webhook of {job_id} to {NOBODY}: failed" in result.stderr
    as_json = cli("webhook", "replay", job_id, "--json")
    document = json.loads(as_json.stdout)
    assert as_json.exit_code == 10
    assert (
        document["error"]["code"] == "webhook_failed" and document["delivery"]["status"] == "failed"
    )
