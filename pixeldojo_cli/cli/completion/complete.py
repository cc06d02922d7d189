"""TAB completion for model ids and `-p` names, wired into the Typer arguments.

The candidates come from `candidates.py`, shared with the fast path
in `fast.py`; completing never imports httpx or Rich.
"""

from __future__ import annotations

from typing import Any

import typer


def _target(ctx: typer.Context) -> tuple[str | None, str | None]:
    from pixeldojo_cli.cli.completion.candidates import completion_target

    root: dict[str, Any] = ctx.find_root().params
    try:
        return completion_target(
            emulator=bool(root.get("emulator")),
            api_key=root.get("api_key"),
            base_url=root.get("base_url"),
            profile=root.get("profile"),
        )
    except Exception:  # a broken config file: complete nothing rather than fail the shell
        return None, None


def complete_model(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Model ids starting with what was typed, with their names as help."""
    from pixeldojo_cli.cli.completion.candidates import model_candidates

    try:
        return model_candidates(*_target(ctx), incomplete)
    except Exception:  # a TAB never prints an error into the shell: offer nothing
        return []


def complete_param(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """After `-p`: the model's parameter names (`name=`), then a name's allowed values."""
    from pixeldojo_cli.cli.completion.candidates import parameter_candidates

    # While `-p` still waits for its value, the parser leaves MODEL in ctx.args.
    model_id = ctx.params.get("model_id") or next(iter(ctx.args), None)
    if not isinstance(model_id, str) or not model_id:
        return []
    try:
        return parameter_candidates(*_target(ctx), model_id, incomplete)
    except Exception:  # a TAB never prints an error into the shell: offer nothing
        return []


def complete_job(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Job ids from the local ledger, newest first, with their model and status."""
    from pixeldojo_cli.cli.completion.candidates import job_candidates

    root: dict[str, Any] = ctx.find_root().params
    try:
        return job_candidates(
            emulator=bool(root.get("emulator")),
            base_url=root.get("base_url"),
            profile=root.get("profile"),
            incomplete=incomplete,
            exclude=[str(a) for a in ctx.args],
        )
    except Exception:  # a broken config file: complete nothing rather than fail the shell
        return []
