"""The emulated models' input schemas: what `requestSchema` holds, built from a
model's row of the table (its id, default price, price table and features).
Every call builds fresh dicts, so no two models share a mutable property spec
(bar the aspect-ratio list and the table's extra parameters, shared as before).
"""

from __future__ import annotations

from typing import Any

from pixeldojo_cli.emulator.catalogue_data import (
    EXTRA_PARAMETERS,
    IMAGE_TO_VIDEO,
    VIDEO_MAX_SECONDS,
    VIDEO_RESOLUTIONS,
)

ASPECT_RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]
_MAX_SEED = 2147483647


def default_resolution(default: float, table: dict[str, float]) -> str:
    """The resolution priced at the model's default credits, else the first one."""
    return next((k for k, v in table.items() if v == default), next(iter(table)))


def image_schema(
    model_id: str, default: float, table: dict[str, float], features: tuple[str, ...]
) -> dict[str, Any]:
    """The input schema of an image model."""
    props = _image_basics()
    if table:
        props["resolution"] = {
            "type": "string",
            "enum": list(table),
            "default": default_resolution(default, table),
            "description": "Output resolution (priced per resolution).",
        }
    props.update(_image_feature_properties(features))
    if model_id.startswith("ponyxl-"):
        props["negative_prompt"] = {"type": "string", "description": "What to avoid."}
    props.update(EXTRA_PARAMETERS.get(model_id, {}))
    return _object_schema(props, ["prompt"])


def video_schema(
    model_id: str, default: float, table: dict[str, float], features: tuple[str, ...]
) -> dict[str, Any]:
    """The input schema of a video model."""
    max_seconds = VIDEO_MAX_SECONDS.get(model_id, 10)
    resolutions = list(table) or VIDEO_RESOLUTIONS.get(model_id, ["720p", "1080p"])
    props: dict[str, Any] = {
        "prompt": {"type": "string", "minLength": 1, "description": "What should happen."},
        "image_url": {"type": "string", "format": "uri", "description": "Start frame."},
        "duration": {
            "type": "integer",
            "minimum": 1,
            "maximum": max_seconds,
            "default": min(5, max_seconds),
            "description": "Length in seconds.",
        },
        "resolution": {
            "type": "string",
            "enum": resolutions,
            "default": default_resolution(default, table) if table else resolutions[0],
            "description": "Output resolution.",
        },
        "aspect_ratio": {
            "type": "string",
            "enum": ["16:9", "9:16", "1:1"],
            "default": "16:9",
            "description": "Width:height of the output.",
        },
        "seed": _seed(),
    }
    if "audio" in features:
        props["generate_audio"] = {
            "type": "boolean",
            "default": True,
            "description": "Generate a soundtrack.",
        }
    if "lora" in features:
        props["lora_url"] = _lora_url()
    required = ["prompt", "image_url"] if model_id in IMAGE_TO_VIDEO else ["prompt"]
    return _object_schema(props, required)


def _image_basics() -> dict[str, Any]:
    """The parameters every image model takes, in the order the API lists them."""
    return {
        "prompt": {"type": "string", "minLength": 1, "description": "What to generate."},
        "aspect_ratio": {
            "type": "string",
            "enum": ASPECT_RATIOS,
            "default": "1:1",
            "description": "Width:height of the output.",
        },
        "seed": _seed(),
        "num_outputs": {
            "type": "integer",
            "minimum": 1,
            "maximum": 4,
            "default": 1,
            "description": "How many images to generate (each is charged).",
        },
        "output_format": {
            "type": "string",
            "enum": ["png", "jpg", "webp"],
            "default": "png",
            "description": "File format of the outputs.",
        },
    }


def _image_feature_properties(features: tuple[str, ...]) -> dict[str, Any]:
    """The parameters an image model's features add: reference images, a LoRA."""
    props: dict[str, Any] = {}
    if "editing" in features:
        props["image_url"] = {"type": "string", "format": "uri", "description": "An image to edit."}
        props["image_urls"] = {
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "maxItems": 10,
            "description": "Reference images to edit.",
        }
    if "lora" in features:
        props["lora_url"] = _lora_url()
        props["lora_scale"] = {
            "type": "number",
            "minimum": 0,
            "maximum": 2,
            "default": 1,
            "description": "Strength of the LoRA.",
        }
    return props


def _seed() -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": _MAX_SEED,
        "description": "Seed for reproducible results.",
    }


def _lora_url() -> dict[str, Any]:
    return {"type": "string", "format": "uri", "description": "URL of LoRA weights to apply."}


def _object_schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
