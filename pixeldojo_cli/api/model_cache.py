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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_TTL = 24 * 3600.0
FETCH_TIMEOUT = 3.0


def _write(path: Path, value: Any) -> None:
    """Best effort: a cache that cannot be written is only a slower TAB. A new
    file (0600, made with O_EXCL, in a 0700 folder) is renamed over the name:
    a link planted there is replaced, never written through."""
    import tempfile

    from pixeldojo_cli.core.ownfolders import private_folder

    try:
        private_folder(path.parent)
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
    """A cache file's JSON, or None when it is missing, stale, damaged, too big,
    nested too deep or not a file of ours (a link is not followed): a cache is a
    file on disk, as untrusted as any."""
    from pixeldojo_cli.core.ownfiles import read_private
    from pixeldojo_cli.core.ownfolders import check_folder
    from pixeldojo_cli.core.untrusted import loads

    try:
        check_folder(path.parent)  # a link there only under the dotfiles rule
        if max_age is not None and time.time() - path.lstat().st_mtime > max_age:
            return None
    except OSError:
        return None
    data = read_private(path, MAX_CACHE_BYTES)
    if data is None:
        return None
    try:
        return loads(data)
    except ValueError:
        return None


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


@dataclass(frozen=True)
class ModelCache:
    """One API's catalogue and model schemas as last fetched, in `folder` (the
    CLI's user cache folder). Reading never fails: a missing, stale, damaged or
    foreign file is no cache."""

    folder: Path
    base_url: str

    def path(self, kind: str, model_id: str | None = None) -> Path:
        """The file holding the catalogue (`models`) or one model's `schema`."""
        tag = hashlib.sha256(self.base_url.rstrip("/").encode()).hexdigest()[:12]
        suffix = f"-{re.sub(r'[^A-Za-z0-9._-]', '_', model_id)[:100]}" if model_id else ""
        return self.folder / f"{kind}-{tag}{suffix}.json"

    def save_models(self, models: list[dict[str, str]]) -> None:
        """Remember the catalogue: `[{"id", "name", "type"}, ...]`."""
        _write(self.path("models"), models)

    def save_schema(self, model_id: str, schema: dict[str, Any]) -> None:
        """Remember one model's input schema."""
        _write(self.path("schema", model_id), schema)

    def models(self, api_key: str | None = None) -> list[dict[str, str]]:
        """The catalogue from the cache; fetched once when missing or older than 24 h;
        an old cache still beats nothing when the API cannot be reached."""
        fresh = _read(self.path("models"), CACHE_TTL)
        if isinstance(fresh, list):
            return fresh
        from pixeldojo_cli.api.results import parse_model_list

        answer = _fetch(self.base_url, "models", api_key)
        if answer is not None:
            try:
                models = [
                    {"id": m.id, "name": m.name, "type": m.modality}
                    for m in parse_model_list(answer)
                ]
            except Exception:
                models = []
            if models:
                self.save_models(models)
                return models
        stale = _read(self.path("models"), None)
        return stale if isinstance(stale, list) else []

    def schema(self, model_id: str, api_key: str | None = None) -> dict[str, Any]:
        """One model's input schema from the cache; fetched once when missing or old."""
        fresh = _read(self.path("schema", model_id), CACHE_TTL)
        if isinstance(fresh, dict):
            return fresh
        from pixeldojo_cli.api.paths import path_segment
        from pixeldojo_cli.api.results import parse_schema
        from pixeldojo_cli.core.errors import UsageError

        try:
            segment = path_segment(model_id, "model id")
        except UsageError:  # `.`, `..`: no model's id, nothing to ask
            return {}
        answer = _fetch(self.base_url, f"models/{segment}/schema", api_key)
        try:
            schema = parse_schema(answer) if answer is not None else {}
        except Exception:
            schema = {}
        if schema:
            self.save_schema(model_id, schema)
            return schema
        stale = _read(self.path("schema", model_id), None)
        return stale if isinstance(stale, dict) else {}

    def cached_schema(self, model_id: str) -> dict[str, Any]:
        """One model's input schema as last fetched, however old (no request);
        {} when the cache has none."""
        schema = _read(self.path("schema", model_id), None)
        return schema if isinstance(schema, dict) else {}

    def _catalogue(self) -> list[dict[str, Any]]:
        """The catalogue's entries in the cache, however old (no request)."""
        models = _read(self.path("models"), None)
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    def model_ids(self) -> list[str]:
        """The model ids in the cache, however old (no request): for did-you-mean."""
        return [str(m["id"]) for m in self._catalogue() if m.get("id")]

    def modality(self, model_id: str) -> str | None:
        """The model's type (`image`, `video`) from the cache, however old (no
        request); None when the cache does not list it."""
        for model in self._catalogue():
            if model.get("id") == model_id:
                kind = model.get("type")
                return kind.strip().lower() if isinstance(kind, str) and kind.strip() else None
        return None
