"""Completion candidates: model ids, `-p` names and values, job ids.

Server text is offered only when a terminal would show it as it is; the model
catalogue and schemas come from the local model cache (`api.model_cache`), or
from the package for the embedded emulator; job ids from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _shown(value: object) -> str:
    """Server text as a shell may show it in a menu: nothing a terminal acts on."""
    from pixeldojo_cli.core.text import safe_text

    return safe_text(str(value))


def _typable(value: object) -> bool:
    """Whether a candidate from the server can be offered at all: nothing unsafe in it."""
    text = str(value)
    return bool(text) and _shown(text) == text


def models_matching(models: list[dict[str, str]], incomplete: str) -> list[tuple[str, str]]:
    """(id, help) pairs whose id starts with what was typed."""
    return [
        (str(m.get("id")), _shown(f"{m.get('name', '')} ({m.get('type', '')})"))
        for m in models
        if isinstance(m, dict)
        and str(m.get("id", "")).startswith(incomplete)
        and _typable(m.get("id", ""))
    ]


def parameters_matching(schema: dict[str, Any], incomplete: str) -> list[tuple[str, str]]:
    """`name=` for parameter names; after `name=`, that parameter's allowed values."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    name, sep, value = incomplete.partition("=")
    if not sep:
        return [
            (f"{key}=", _shown(spec.get("description", "")) if isinstance(spec, dict) else "")
            for key, spec in properties.items()
            if key.startswith(name) and key != "webhook_url" and _typable(key)
        ]
    spec = properties.get(name)
    if not isinstance(spec, dict):
        return []
    choices: list[Any] = list(spec.get("enum") or [])
    if spec.get("type") == "boolean":
        choices = ["true", "false"]
    return [(f"{name}={c}", "") for c in choices if str(c).startswith(value) and _typable(c)]


def completion_target(
    *,
    emulator: bool,
    api_key: str | None,
    base_url: str | None,
    profile: str | None,
    env: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """(base URL, key) to complete against; (None, None) for the embedded
    emulator, whose catalogue is in the package. A broken config file raises."""
    from pixeldojo_cli.store.settings import emulator_from_env, resolve_settings

    if emulator or emulator_from_env(env):
        return None, None
    settings = resolve_settings(api_key=api_key, base_url=base_url, profile=profile, env=env)
    return str(settings.base_url.value), settings.api_key.value


def model_candidates(
    base_url: str | None, api_key: str | None, incomplete: str
) -> list[tuple[str, str]]:
    """Model ids starting with `incomplete`, with their names as help."""
    if base_url is None:
        from pixeldojo_cli.emulator.catalogue import build_catalogue

        models = [
            {"id": m["apiId"], "name": m["name"], "type": m["modality"]}
            for m in build_catalogue().values()
        ]
    else:
        from pixeldojo_cli.api.model_cache import ModelCache
        from pixeldojo_cli.store.settings import cache_dir

        models = ModelCache(cache_dir(), base_url).models(api_key)
    return models_matching(models, incomplete)


def parameter_candidates(
    base_url: str | None, api_key: str | None, model_id: str, incomplete: str
) -> list[tuple[str, str]]:
    """After `-p`: the model's parameter names (`name=`), then a name's allowed values."""
    if base_url is None:
        from pixeldojo_cli.emulator.catalogue import build_catalogue

        schema = (build_catalogue().get(model_id) or {}).get("requestSchema") or {}
    else:
        from pixeldojo_cli.api.model_cache import ModelCache
        from pixeldojo_cli.store.settings import cache_dir

        schema = ModelCache(cache_dir(), base_url).schema(model_id, api_key)
    return parameters_matching(schema, incomplete)


def job_candidates(
    *,
    emulator: bool,
    base_url: str | None,
    profile: str | None,
    incomplete: str,
    exclude: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Job ids from the local ledger, newest first, with `model, status` as help.

    Jobs under the embedded emulator are not recorded: nothing to offer there.
    """
    from pixeldojo_cli.store.ledger import recent_job_ids
    from pixeldojo_cli.store.settings import emulator_from_env, resolve_settings

    if emulator or emulator_from_env(env):
        return []
    settings = resolve_settings(base_url=base_url, profile=profile, env=env)
    taken = set(exclude or ())
    return [
        (job_id, f"{model}, {status}")
        for job_id, model, status in recent_job_ids(
            base_url=str(settings.base_url.value), profile=str(settings.profile.value)
        )
        if job_id.startswith(incomplete) and job_id not in taken
    ]
