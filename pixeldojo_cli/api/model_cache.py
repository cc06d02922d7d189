"""The local model cache: the catalogue and model schemas as last fetched.

JSON files in a cache folder the caller names (the CLI's user cache folder),
written whenever `models` or `run` fetch the catalogue or a schema, kept 24 h.
Shell completion reads them on every TAB, so reading is quick and asks the API
only when they are missing or old: once, with a short timeout, through the same
`Transport` as every other request (the key only for the API's origin, no
redirect followed). httpx is imported only then: a TAB on a warm cache never
loads it. The `Client` reads model types and ids from it (never a request).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

CACHE_TTL = 24 * 3600.0
FETCH_TIMEOUT = 3.0


def _cache_path(folder: Path, kind: str, base_url: str, model_id: str | None = None) -> Path:
    tag = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:12]
    suffix = f"-{re.sub(r'[^A-Za-z0-9._-]', '_', model_id)[:100]}" if model_id else ""
    return folder / f"{kind}-{tag}{suffix}.json"


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


def save_models(folder: Path, base_url: str, models: list[dict[str, str]]) -> None:
    """Remember the catalogue: `[{"id", "name", "type"}, ...]`."""
    _write(_cache_path(folder, "models", base_url), models)


def save_schema(folder: Path, base_url: str, model_id: str, schema: dict[str, Any]) -> None:
    _write(_cache_path(folder, "schema", base_url, model_id), schema)


def _fetch(base_url: str, path: str, api_key: str | None) -> Any:
    """One GET of an API path for completion, or None on any failure (a TAB
    never fails): one attempt, `FETCH_TIMEOUT` in all, and the answer taken in
    as every API answer is (bounded, decoded, the key masked)."""
    from pixeldojo_cli.api.responses import json_body
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
        return json_body(transport.request("GET", path, timeout=FETCH_TIMEOUT), api_key)
    except (PixelDojoError, OSError, ValueError):
        return None
    finally:
        transport.close()


def cached_models(folder: Path, base_url: str, api_key: str | None = None) -> list[dict[str, str]]:
    """The catalogue from the cache; fetched once when missing or older than 24 h;
    an old cache still beats nothing when the API cannot be reached."""
    fresh = _read(_cache_path(folder, "models", base_url), CACHE_TTL)
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
            save_models(folder, base_url, models)
            return models
    stale = _read(_cache_path(folder, "models", base_url), None)
    return stale if isinstance(stale, list) else []


def _cached_catalogue(folder: Path, base_url: str) -> list[dict[str, Any]]:
    """The catalogue's entries in the cache, however old (no request)."""
    models = _read(_cache_path(folder, "models", base_url), None)
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def known_model_ids(folder: Path, base_url: str) -> list[str]:
    """The model ids in the cache, however old (no request): for did-you-mean."""
    return [str(m["id"]) for m in _cached_catalogue(folder, base_url) if m.get("id")]


def known_modality(folder: Path, base_url: str, model_id: str) -> str | None:
    """The model's type (`image`, `video`) from the cache, however old (no
    request); None when the cache does not list it."""
    for model in _cached_catalogue(folder, base_url):
        if model.get("id") == model_id:
            kind = model.get("type")
            return kind.strip().lower() if isinstance(kind, str) and kind.strip() else None
    return None


def cached_schema(
    folder: Path, base_url: str, model_id: str, api_key: str | None = None
) -> dict[str, Any]:
    fresh = _read(_cache_path(folder, "schema", base_url, model_id), CACHE_TTL)
    if isinstance(fresh, dict):
        return fresh
    from pixeldojo_cli.api.results import parse_schema

    answer = _fetch(base_url, f"models/{quote(model_id, safe='')}/schema", api_key)
    try:
        schema = parse_schema(answer) if answer is not None else {}
    except Exception:
        schema = {}
    if schema:
        save_schema(folder, base_url, model_id, schema)
        return schema
    stale = _read(_cache_path(folder, "schema", base_url, model_id), None)
    return stale if isinstance(stale, dict) else {}
