"""The emulator's model catalogue: the 32 image and 4 video models of the
published API reference, their prices and features, and plausible input
schemas. Shapes follow the public material (docs/api-tolerance.md).
"""

from __future__ import annotations

from typing import Any

# (apiId, name, modality, credits, per second, price by resolution, features, description)
_MODELS: tuple[tuple[str, str, str, float, bool, dict[str, float], tuple[str, ...], str], ...] = (
    (
        "flux-dev",
        "Flux Dev",
        "image",
        1,
        False,
        {},
        ("lora",),
        "High-quality development model with configurable steps, guidance, and LoRA support.",
    ),
    (
        "flux-krea-dev",
        "Flux Krea Dev",
        "image",
        1,
        False,
        {},
        ("lora",),
        "Photorealistic generation that avoids the oversaturated AI look. LoRA compatible.",
    ),
    (
        "flux-1.1-pro",
        "Flux 1.1 Pro",
        "image",
        1,
        False,
        {},
        (),
        "Latest pro model with enhanced quality and strong prompt adherence.",
    ),
    (
        "flux-1.1-pro-ultra",
        "Flux 1.1 Pro Ultra",
        "image",
        1.5,
        False,
        {},
        (),
        "Highest quality Flux model with raw mode for natural-looking images.",
    ),
    (
        "flux-kontext-pro",
        "Flux Kontext Pro",
        "image",
        1,
        False,
        {},
        ("editing",),
        "Advanced model with state-of-the-art performance for both generation and editing.",
    ),
    (
        "flux-kontext-max",
        "Flux Kontext Max",
        "image",
        2,
        False,
        {},
        ("editing",),
        "Premium model with maximum performance and improved typography for generation and editing.",
    ),
    (
        "flux-2-flex",
        "Flux 2 Flex",
        "image",
        1.5,
        False,
        {"0.5 MP": 1.0, "1 MP": 1.5, "2 MP": 3.0, "4 MP": 5.0},
        ("lora", "editing"),
        "Max-quality with up to 10 reference images",
    ),
    (
        "flux-2-klein-4b",
        "Flux 2 Klein 4B",
        "image",
        0.1,
        False,
        {},
        ("lora", "editing"),
        "Very fast generation and editing with up to 5 reference images",
    ),
    (
        "flux-2-klein-9b",
        "Flux 2 Klein 9B",
        "image",
        0.5,
        False,
        {},
        ("lora", "editing"),
        "4-step distilled FLUX.2 [klein] foundation model for flexible control",
    ),
    (
        "flux-2-pro",
        "Flux 2 Pro",
        "image",
        1.5,
        False,
        {"0.5 MP": 1.0, "1 MP": 1.5, "2 MP": 2.0, "4 MP": 2.0},
        ("lora", "editing"),
        "High-quality with up to 8 reference images",
    ),
    (
        "flux-2-max",
        "Flux 2 Max",
        "image",
        2,
        False,
        {"0.5 MP": 1.0, "1 MP": 2.0, "2 MP": 3.0, "4 MP": 4.0},
        ("lora", "editing"),
        "The highest fidelity image model from Black Forest Labs",
    ),
    (
        "flux-2-dev",
        "Flux 2 Dev",
        "image",
        1,
        False,
        {},
        ("lora", "editing"),
        "Fast quality with up to 4 reference images",
    ),
    (
        "seedream-4",
        "Seedream 4.5",
        "image",
        1,
        False,
        {},
        ("editing",),
        "ByteDance Seedream 4.5 - New-generation image creation with superior aesthetics, text rendering, and up to 4K resolution",
    ),
    (
        "seedream-5-lite",
        "Seedream 5 Lite",
        "image",
        1,
        False,
        {},
        ("editing",),
        "ByteDance Seedream 5.0 Lite - fast, high-quality image generation and editing with strong aesthetics and text rendering",
    ),
    (
        "ponyxl-ponyrealism-v23",
        "Pony Realism",
        "image",
        1,
        False,
        {},
        ("lora",),
        "Pony Realism - Stylized anime generation",
    ),
    (
        "ponyxl-tponynai3-v7",
        "Pony NAI",
        "image",
        1,
        False,
        {},
        ("lora",),
        "Pony NAI - Stylized anime generation",
    ),
    (
        "ponyxl-waianinsfwponyxl-v140",
        "Wai ANI",
        "image",
        1,
        False,
        {},
        ("lora",),
        "Wai ANI - Stylized anime generation",
    ),
    (
        "qwen-image-plus",
        "QWEN Image Plus",
        "image",
        1,
        False,
        {},
        ("lora", "editing"),
        "Fast generation with excellent quality",
    ),
    (
        "qwen-image-max",
        "QWEN Image Max",
        "image",
        2,
        False,
        {},
        ("lora", "editing"),
        "Highest quality output",
    ),
    (
        "qwen-image-2.0",
        "QWEN Image 2.0",
        "image",
        1,
        False,
        {},
        ("editing",),
        "Fast, balanced image generation and editing",
    ),
    (
        "qwen-image-2.0-pro",
        "QWEN Image 2.0 Pro",
        "image",
        2,
        False,
        {},
        ("editing",),
        "Enhanced text rendering, realistic textures, and semantic adherence",
    ),
    (
        "wan-image",
        "WAN 2.2 Image",
        "image",
        1,
        False,
        {},
        ("lora",),
        "Fast cinematic image generation (3-6 seconds) with up to 4MP output and optional LoRA support",
    ),
    (
        "wan-2.6-image",
        "WAN 2.6 Image",
        "image",
        1,
        False,
        {},
        ("editing",),
        "Alibaba WAN 2.6 high-quality AI image generation with prompt enhancement and up to 2MP output",
    ),
    (
        "z-image-turbo",
        "Z Image Turbo",
        "image",
        0.5,
        False,
        {},
        ("lora",),
        "Super fast 6B parameter photorealistic image generation with excellent text rendering and LoRA support",
    ),
    (
        "p-image",
        "P-Image",
        "image",
        1,
        False,
        {},
        ("editing",),
        "Sub-second text-to-image generation with exceptional text rendering and prompt adherence",
    ),
    (
        "imagineart",
        "ImagineArt 1.5 Pro",
        "image",
        1.5,
        False,
        {},
        (),
        "Advanced text-to-image model generating ultra-high-fidelity 4K visuals with lifelike realism and refined aesthetics",
    ),
    (
        "gemini-flash",
        "Google Gemini Flash",
        "image",
        1,
        False,
        {},
        ("editing",),
        "Fast generation with Gemini 2.5 Flash",
    ),
    (
        "nano-banana-pro",
        "Google Nano Banana Pro",
        "image",
        3,
        False,
        {"1K": 3.0, "2K": 3.0, "4K": 6.0},
        ("editing",),
        "SOTA with accurate typography and reasoning",
    ),
    (
        "nano-banana-2",
        "Google Nano Banana 2",
        "image",
        3,
        False,
        {"1K": 2.0, "2K": 3.0, "4K": 4.0},
        ("editing",),
        "Next-generation SOTA model with stronger consistency",
    ),
    (
        "kling-image",
        "Kling Image V3",
        "image",
        1,
        False,
        {},
        ("editing",),
        "Kling Image V3 text-to-image generation with optional image edits and flexible aspect ratios",
    ),
    (
        "xai-image",
        "xAI Image",
        "image",
        1,
        False,
        {},
        ("editing",),
        "xAI Grok Imagine Image via Replicate for text-to-image and single-image edits",
    ),
    (
        "dreamina",
        "Dreamina 3.1",
        "image",
        1,
        False,
        {},
        (),
        "ByteDance 4MP cinematic image generation with enhanced quality, precise style control, and commercial design optimization",
    ),
    (
        "wan-2.6-flash",
        "WAN 2.6 Flash",
        "video",
        1,
        True,
        {"720p": 1.0, "1080p": 1.5},
        ("audio",),
        "Fast and affordable image-to-video",
    ),
    (
        "wan-2.2-plus",
        "WAN 2.2 Plus",
        "video",
        10,
        False,
        {},
        ("lora",),
        "Official Alibaba model with 1080p support",
    ),
    (
        "seedance-1.5",
        "Seedance 1.5",
        "video",
        1.5,
        True,
        {},
        ("audio",),
        "ByteDance Seedance 1.5 video generation with native audio, dance motion, 480p/720p resolution, and up to 12 seconds duration",
    ),
    (
        "xai-video",
        "xAI Video",
        "video",
        2,
        True,
        {},
        (),
        "xAI video generation via Replicate with text-to-video and image-to-video support",
    ),
)

ASPECT_RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]
# Extra parameters some models take beyond the common ones.
_EXTRAS: dict[str, dict[str, dict[str, Any]]] = {
    "flux-dev": {
        "num_inference_steps": {
            "type": "integer",
            "minimum": 1,
            "maximum": 50,
            "default": 28,
            "description": "Denoising steps.",
        },
        "guidance": {
            "type": "number",
            "minimum": 0,
            "maximum": 10,
            "default": 3.5,
            "description": "How closely to follow the prompt.",
        },
    },
    "flux-krea-dev": {
        "guidance": {
            "type": "number",
            "minimum": 0,
            "maximum": 10,
            "default": 3.5,
            "description": "How closely to follow the prompt.",
        },
    },
    "flux-1.1-pro-ultra": {
        "raw": {
            "type": "boolean",
            "default": False,
            "description": "Less processed, more natural-looking images.",
        },
    },
}
_VIDEO_RESOLUTIONS = {"seedance-1.5": ["480p", "720p"], "wan-2.6-flash": ["720p", "1080p"]}
_VIDEO_MAX_SECONDS = {"seedance-1.5": 12, "wan-2.6-flash": 10, "xai-video": 15, "wan-2.2-plus": 5}
_IMAGE_TO_VIDEO = {"wan-2.6-flash"}  # needs a start image


def _default_resolution(default: float, table: dict[str, float]) -> str:
    return next((k for k, v in table.items() if v == default), next(iter(table)))


def _image_schema(
    model_id: str, default: float, table: dict[str, float], features: tuple[str, ...]
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "prompt": {"type": "string", "minLength": 1, "description": "What to generate."},
        "aspect_ratio": {
            "type": "string",
            "enum": ASPECT_RATIOS,
            "default": "1:1",
            "description": "Width:height of the output.",
        },
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647,
            "description": "Seed for reproducible results.",
        },
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
    if table:
        props["resolution"] = {
            "type": "string",
            "enum": list(table),
            "default": _default_resolution(default, table),
            "description": "Output resolution (priced per resolution).",
        }
    if "editing" in features:
        props["image_urls"] = {
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "maxItems": 10,
            "description": "Reference images to edit.",
        }
    if "lora" in features:
        props["lora_url"] = {
            "type": "string",
            "format": "uri",
            "description": "URL of LoRA weights to apply.",
        }
        props["lora_scale"] = {
            "type": "number",
            "minimum": 0,
            "maximum": 2,
            "default": 1,
            "description": "Strength of the LoRA.",
        }
    if model_id.startswith("ponyxl-"):
        props["negative_prompt"] = {"type": "string", "description": "What to avoid."}
    props.update(_EXTRAS.get(model_id, {}))
    return {
        "type": "object",
        "properties": props,
        "required": ["prompt"],
        "additionalProperties": False,
    }


def _video_schema(
    model_id: str, default: float, table: dict[str, float], features: tuple[str, ...]
) -> dict[str, Any]:
    max_seconds = _VIDEO_MAX_SECONDS.get(model_id, 10)
    resolutions = list(table) or _VIDEO_RESOLUTIONS.get(model_id, ["720p", "1080p"])
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
            "default": _default_resolution(default, table) if table else resolutions[0],
            "description": "Output resolution.",
        },
        "aspect_ratio": {
            "type": "string",
            "enum": ["16:9", "9:16", "1:1"],
            "default": "16:9",
            "description": "Width:height of the output.",
        },
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647,
            "description": "Seed for reproducible results.",
        },
    }
    if "audio" in features:
        props["generate_audio"] = {
            "type": "boolean",
            "default": True,
            "description": "Generate a soundtrack.",
        }
    if "lora" in features:
        props["lora_url"] = {
            "type": "string",
            "format": "uri",
            "description": "URL of LoRA weights to apply.",
        }
    required = ["prompt", "image_url"] if model_id in _IMAGE_TO_VIDEO else ["prompt"]
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


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
    for model_id, name, modality, default, per_second, table, features, description in _MODELS:
        builder = _video_schema if modality == "video" else _image_schema
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


# How long each model's jobs take in the emulator: (low, high) seconds, the range
# ~95 % of its jobs fall in (log-normal). Made up, but shaped like the real thing:
# distilled "turbo" image models finish in a second or two, pro and max image
# models in ten or more, video in a minute or two.
_FAST_IMAGE = (1.0, 3.0)
_IMAGE = (3.0, 8.0)
_SLOW_IMAGE = (8.0, 20.0)
_FAST_VIDEO = (20.0, 60.0)
_VIDEO = (30.0, 120.0)
_DURATIONS: dict[str, tuple[float, float]] = {
    "flux-2-klein-4b": _FAST_IMAGE,
    "flux-2-klein-9b": _FAST_IMAGE,
    "z-image-turbo": _FAST_IMAGE,
    "p-image": (0.5, 1.5),
    "flux-dev": _FAST_IMAGE,
    "flux-2-dev": _FAST_IMAGE,
    "seedream-5-lite": _FAST_IMAGE,
    "gemini-flash": _FAST_IMAGE,
    "qwen-image-2.0": _FAST_IMAGE,
    "wan-image": (3.0, 6.0),
    "flux-1.1-pro-ultra": _SLOW_IMAGE,
    "flux-kontext-max": _SLOW_IMAGE,
    "flux-2-flex": _SLOW_IMAGE,
    "flux-2-max": _SLOW_IMAGE,
    "qwen-image-max": _SLOW_IMAGE,
    "qwen-image-2.0-pro": _SLOW_IMAGE,
    "nano-banana-pro": _SLOW_IMAGE,
    "imagineart": _SLOW_IMAGE,
    "dreamina": _SLOW_IMAGE,
    "wan-2.6-flash": _FAST_VIDEO,
}


def duration_range(model: dict[str, Any]) -> tuple[float, float]:
    """(low, high) seconds that ~95 % of this model's emulated jobs take."""
    default = _VIDEO if model.get("modality") == "video" else _IMAGE
    return _DURATIONS.get(str(model.get("apiId")), default)
