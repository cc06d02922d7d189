"""TAB completion for model ids and `-p` names, wired into the Typer arguments.

Kept apart from the commands so that completing never imports httpx or Rich.
"""

from __future__ import annotations

from typing import Any

import typer


def _target(ctx: typer.Context) -> tuple[str | None, str | None]:
    """(base URL, key) for the command line being completed; (None, None) for the
    embedded emulator, whose catalogue is in the package."""
    from pixeldojo_cli.cli.state import emulator_requested
    from pixeldojo_cli.settings import resolve_settings

    root: dict[str, Any] = ctx.find_root().params
    if emulator_requested(bool(root.get("emulator"))):
        return None, None
    try:
        settings = resolve_settings(
            api_key=root.get("api_key"), base_url=root.get("base_url"), profile=root.get("profile")
        )
    except Exception:  # a broken config file: complete nothing rather than fail the shell
        return None, None
    return str(settings.base_url.value), settings.api_key.value


def _emulated_catalogue() -> dict[str, dict[str, Any]]:
    from pixeldojo_cli.emulator.catalogue import build_catalogue

    return build_catalogue()


def complete_model(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Model ids starting with what was typed, with their names as help."""
    from pixeldojo_cli.completion import cached_models, models_matching

    base_url, key = _target(ctx)
    if base_url is None:
        models = [
            {"id": m["apiId"], "name": m["name"], "type": m["modality"]}
            for m in _emulated_catalogue().values()
        ]
    else:
        models = cached_models(base_url, key)
    return models_matching(models, incomplete)


def complete_param(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """After `-p`: the model's parameter names (`name=`), then a name's allowed values."""
    from pixeldojo_cli.completion import cached_schema, parameters_matching

    # While `-p` still waits for its value, the parser leaves MODEL in ctx.args.
    model_id = ctx.params.get("model_id") or next(iter(ctx.args), None)
    if not isinstance(model_id, str) or not model_id:
        return []
    base_url, key = _target(ctx)
    if base_url is None:
        model = _emulated_catalogue().get(model_id) or {}
        schema = model.get("requestSchema") or {}
    else:
        schema = cached_schema(base_url, model_id, key)
    return parameters_matching(schema, incomplete)
