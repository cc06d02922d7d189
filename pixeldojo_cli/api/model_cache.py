"""Shell completion of model ids and `-p` parameter names, from a small cache.

Completion runs on every TAB, so it must be quick: it reads JSON files in the
user cache folder (written whenever `models` or `run` fetch the catalogue or a
schema, kept 24 h) and only when they are missing or old asks the API once,
with a short timeout, through the same `Transport` as every other request
(the key only for the API's origin, no redirect followed). httpx is imported
only then: a TAB on a warm cache never loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

CACHE_TTL = 24 * 3600.0
FETCH_TIMEOUT = 3.0


def _cache_path(kind: str, base_url: str, model_id: str | None = None) -> Path:
    from pixeldojo_cli.store.settings import cache_dir

    tag = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:12]
    suffix = f"-{re.sub(r'[^A-Za-z0-9._-]', '_', model_id)[:100]}" if model_id else ""
    return cache_dir() / f"{kind}-{tag}{suffix}.json"


def _write(path: Path, value: Any) -> None:
    """Best effort: a cache that cannot be written is only a slower TAB."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle)
        os.replace(tmp, path)
    except OSError:
        return


# No catalogue or schema the API sends comes near this; a cache file past it is
# damaged (or not ours) and is ignored like a missing one.
MAX_CACHE_BYTES = 16 * 1024 * 1024


def _read(path: Path, max_age: float | None) -> Any:
    """A cache file's JSON, or None when it is missing, stale, damaged, too big or
    nested too deep (a cache is a file on disk, as untrusted as any)."""
    from pixeldojo_cli.core.untrusted import loads, read_small_file

    try:
        if max_age is not None and time.time() - path.stat().st_mtime > max_age:
            return None
    except OSError:
        return None
    data = read_small_file(path, MAX_CACHE_BYTES)
    if data is None:
        return None
    try:
        return loads(data)
    except ValueError:
        return None


def save_models(base_url: str, models: list[dict[str, str]]) -> None:
    """Remember the catalogue: `[{"id", "name", "type"}, ...]`."""
    _write(_cache_path("models", base_url), models)


def save_schema(base_url: str, model_id: str, schema: dict[str, Any]) -> None:
    _write(_cache_path("schema", base_url, model_id), schema)


def _fetch(base_url: str, path: str, api_key: str | None) -> Any:
    """One GET of an API path for completion, or None on any failure (a TAB
    never fails): one attempt, `FETCH_TIMEOUT` in all, and the answer taken in
    as every API answer is (bounded, decoded, the key masked)."""
    from pixeldojo_cli.api.client import _json_body
    from pixeldojo_cli.api.transport import RetryPolicy, Transport
    from pixeldojo_cli.core.errors import PixelDojoError

    try:
        transport = Transport(
            base_url,
            api_key,
            timeout=FETCH_TIMEOUT,
            total_timeout=FETCH_TIMEOUT,
            retry=RetryPolicy(max_attempts=1),
        )
    except PixelDojoError:  # a key or base URL that cannot be used: complete from the cache
        return None
    try:
        return _json_body(transport.request("GET", path, timeout=FETCH_TIMEOUT), api_key)
    except (PixelDojoError, OSError, ValueError):
        return None
    finally:
        transport.close()


def cached_models(base_url: str, api_key: str | None = None) -> list[dict[str, str]]:
    """The catalogue from the cache; fetched once when missing or older than 24 h;
    an old cache still beats nothing when the API cannot be reached."""
    fresh = _read(_cache_path("models", base_url), CACHE_TTL)
    if isinstance(fresh, list):
        return fresh
    from pixeldojo_cli.api.results import parse_model_list

    answer = _fetch(base_url, "models", api_key)
    if answer is not None:
        try:
            models = [
                {"id": m.id, "name": m.name, "type": m.modality} for m in parse_model_list(answer)
            ]
        except Exception:
            models = []
        if models:
            save_models(base_url, models)
            return models
    stale = _read(_cache_path("models", base_url), None)
    return stale if isinstance(stale, list) else []


def _cached_catalogue(base_url: str) -> list[dict[str, Any]]:
    """The catalogue's entries in the cache, however old (no request)."""
    models = _read(_cache_path("models", base_url), None)
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def known_model_ids(base_url: str) -> list[str]:
    """The model ids in the cache, however old (no request): for did-you-mean."""
    return [str(m["id"]) for m in _cached_catalogue(base_url) if m.get("id")]


def known_modality(base_url: str, model_id: str) -> str | None:
    """The model's type (`image`, `video`) from the cache, however old (no
    request); None when the cache does not list it."""
    for model in _cached_catalogue(base_url):
        if model.get("id") == model_id:
            kind = model.get("type")
            return kind.strip().lower() if isinstance(kind, str) and kind.strip() else None
    return None


def cached_schema(base_url: str, model_id: str, api_key: str | None = None) -> dict[str, Any]:
    fresh = _read(_cache_path("schema", base_url, model_id), CACHE_TTL)
    if isinstance(fresh, dict):
        return fresh
    from pixeldojo_cli.api.results import parse_schema

    answer = _fetch(base_url, f"models/{quote(model_id, safe='')}/schema", api_key)
    try:
        schema = parse_schema(answer) if answer is not None else {}
    except Exception:
        schema = {}
    if schema:
        save_schema(base_url, model_id, schema)
        return schema
    stale = _read(_cache_path("schema", base_url, model_id), None)
    return stale if isinstance(stale, dict) else {}


def _shown(value: object) -> str:
    """Server text as a shell may show it in a menu: nothing a terminal acts on."""
    from pixeldojo_cli.cli.render import safe_text

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
        models = cached_models(base_url, api_key)
    return models_matching(models, incomplete)


def parameter_candidates(
    base_url: str | None, api_key: str | None, model_id: str, incomplete: str
) -> list[tuple[str, str]]:
    """After `-p`: the model's parameter names (`name=`), then a name's allowed values."""
    if base_url is None:
        from pixeldojo_cli.emulator.catalogue import build_catalogue

        schema = (build_catalogue().get(model_id) or {}).get("requestSchema") or {}
    else:
        schema = cached_schema(base_url, model_id, api_key)
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
