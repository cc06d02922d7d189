"""The emulator's model catalogue: the model objects `GET /models/{apiId}`
answers with, built from the table in `catalogue_data.py` and the schemas of
`schemas.py`, and what a job of each costs and how long it takes. Shapes follow
the public material (docs/api-tolerance.md).

Shell completion under --emulator reads this module: it must stay light (no
http.server, nothing of the running emulator).
"""

from __future__ import annotations

from typing import Any

from pixeldojo_cli.emulator.catalogue_data import (
    DEFAULT_IMAGE_DURATION,
    DEFAULT_VIDEO_DURATION,
    DURATIONS,
    MODELS,
)
from pixeldojo_cli.emulator.schemas import image_schema, video_schema


def _credit_cost(default: float, per_second: bool, table: dict[str, float]) -> dict[str, Any]:
    if per_second:
        cost: dict[str, Any] = {"default": default, "type": "per_second", "perSecond": default}
    elif table:
        cost = {"default": default, "type": "by_resolution"}
    else:
        return {"default": default, "type": "fixed", "amount": default}
    if table:
        cost["byResolution"] = dict(table)
    return cost


def build_catalogue() -> dict[str, dict[str, Any]]:
    """apiId -> the model object `GET /models/{apiId}` answers with."""
    catalogue: dict[str, dict[str, Any]] = {}
    for model_id, name, modality, default, per_second, table, features, description in MODELS:
        builder = video_schema if modality == "video" else image_schema
        catalogue[model_id] = {
            "apiId": model_id,
            "name": name,
            "description": description,
            "modality": modality,
            "creditCost": _credit_cost(default, per_second, table),
            "features": list(features),
            "requestSchema": builder(model_id, default, table, features),
        }
    return catalogue


def charge_for(model: dict[str, Any], inputs: dict[str, Any]) -> float:
    """What the emulator charges: per image (x num_outputs) or per second (x duration),
    at the price of the chosen resolution when the price depends on it."""
    cost = model["creditCost"]
    props = model["requestSchema"]["properties"]
    unit = float(cost["default"])
    table = cost.get("byResolution") or {}
    resolution = inputs.get("resolution", props.get("resolution", {}).get("default"))
    if resolution in table:
        unit = float(table[resolution])
    if cost["type"] == "per_second":
        seconds = inputs.get("duration", props["duration"]["default"])
        return round(unit * float(seconds), 4)
    count = inputs.get("num_outputs", 1) if model["modality"] == "image" else 1
    return round(unit * float(count), 4)


def duration_range(model: dict[str, Any]) -> tuple[float, float]:
    """(low, high) seconds that ~95 % of this model's emulated jobs take."""
    video = model.get("modality") == "video"
    default = DEFAULT_VIDEO_DURATION if video else DEFAULT_IMAGE_DURATION
    return DURATIONS.get(str(model.get("apiId")), default)
