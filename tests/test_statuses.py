"""Statuses beyond the published four: the known synonyms of terminal states end
the wait with the right exit code; anything else is waited for, boundedly."""

from __future__ import annotations

from pathlib import Path

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, Invoke


def test_a_canceled_job_ends_the_wait_as_failed(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "a cat #status=canceled", *FAST)
    assert result.exit_code == 5, result.output
    assert "canceled" in result.stderr


def test_a_succeeded_job_is_saved(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "a cat #status=succeeded", *FAST)
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()).exists()


def test_an_unknown_status_is_waited_for_no_longer_than_the_setting_says(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli(
        "run",
        "flux-dev",
        "a cat #status=weird",
        *FAST,
        env={"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": "1"},
    )
    assert result.exit_code == 9, result.output
    assert "weird" in result.stderr and "unknown_status_timeout" in result.stderr
