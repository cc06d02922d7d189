"""`pixeldojo models`: the catalogue, one model's parameters, its raw schema."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from pixeldojo_cli.cli.completion.complete import complete_model
from pixeldojo_cli.cli.documents import model_summary
from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.state import get_state
from pixeldojo_cli.cli.tables import Column, number_text
from pixeldojo_cli.core.text import plural


class ModelType(StrEnum):
    image = "image"
    video = "video"


class Feature(StrEnum):
    lora = "lora"
    editing = "editing"
    audio = "audio"


app = typer.Typer(
    help="List models, show a model's parameters, print its input schema.",
    invoke_without_command=True,
    no_args_is_help=False,
    cls=PixelDojoGroup,
)

TypeOption = Annotated[
    ModelType | None, typer.Option("--type", "-t", help="Only image or video models.")
]
FeatureOption = Annotated[
    Feature | None, typer.Option("--feature", "-f", help="Only models with this feature.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]

# The id is never cut; on a narrow terminal the other columns go, features first.
MODEL_COLUMNS = [
    Column("ID", key=True),
    Column("NAME", drop=4, wrap=True),
    Column("TYPE", drop=2),
    Column("CREDITS", drop=3, wrap=True),
    Column("FEATURES", drop=5),
]
PARAMETER_COLUMNS = [
    Column("PARAMETER", key=True),
    Column("TYPE", drop=3),
    Column("DEFAULT", drop=2, least=8),
    Column("ALLOWED", drop=4, wrap=True),
    Column("DESCRIPTION", drop=5, wrap=True),
]

LIST_EXAMPLES = """\
Examples:

  pixeldojo models

  pixeldojo models --type video

  pixeldojo models --feature lora --json | jq -r '.[].id'
"""


def _list(
    ctx: typer.Context, model_type: ModelType | None, feature: Feature | None, json_output: bool
) -> None:
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        client = state.client()
        models = client.list_models(modality=model_type.value if model_type else None)
        if model_type is None and not state.use_emulator:
            from pixeldojo_cli.api.model_cache import ModelCache
            from pixeldojo_cli.store.settings import cache_dir

            ModelCache(cache_dir(), str(client.base_url)).save_models(
                [{"id": m.id, "name": m.name, "type": m.modality} for m in models],
            )
        if feature is not None:
            models = [m for m in models if feature.value in m.features]
        if json_output:
            state.render.json([model_summary(m) for m in models])
            return
        rows = [
            [m.id, m.name, m.modality, m.cost.describe(), ", ".join(m.features)] for m in models
        ]
        state.render.table(MODEL_COLUMNS, rows, empty="No models match.")
        if models:
            state.render.note(
                f"{plural(len(models), 'model')}. Details: pixeldojo models show <id>"
            )


@app.callback(epilog=LIST_EXAMPLES)
def models_root(
    ctx: typer.Context,
    model_type: TypeOption = None,
    feature: FeatureOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the models (id, name, type, credit cost, features).

    Prices are credits per output, per second of video, or by resolution.
    Piped, the table is tab-separated; --json gives the full cost objects.
    """
    if ctx.invoked_subcommand is None:
        _list(ctx, model_type, feature, json_output)


@app.command("list", epilog=LIST_EXAMPLES, cls=PixelDojoCommand)
def list_models(
    ctx: typer.Context,
    model_type: TypeOption = None,
    feature: FeatureOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the models (id, name, type, credit cost, features).

    Prices are credits per output, per second of video, or by resolution.
    Piped, the table is tab-separated; --json gives the full cost objects.
    """
    _list(ctx, model_type, feature, json_output)


def _allowed(values: tuple[Any, ...] | None, minimum: float | None, maximum: float | None) -> str:
    if values:
        return ", ".join(str(v) for v in values)
    if minimum is not None or maximum is not None:
        low = "" if minimum is None else number_text(minimum)
        high = "" if maximum is None else number_text(maximum)
        return f"{low}..{high}"
    return ""


@app.command(
    "show",
    epilog=(
        "Examples:\n\n  pixeldojo models show flux-dev\n\n"
        "  pixeldojo models show seedance-1.5 --json"
    ),
    cls=PixelDojoCommand,
)
def show(
    ctx: typer.Context,
    model_id: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Model id, e.g. flux-dev.", autocompletion=complete_model
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Show a model's details and its input parameters.

    Each parameter with its type, default, allowed values and description: what
    `run -p NAME=VALUE` accepts. Needs no key where the API allows it.
    """
    from pixeldojo_cli.inputs.schema import parameters

    state = get_state(ctx)
    with state.guard(json_output=json_output):
        client = state.client()
        model, schema = client.model_with_schema(model_id)
        if json_output:
            state.render.json({**model_summary(model), "requestSchema": schema})
            return
        render = state.render
        render.result(f"{model.name} ({model.id})")
        if model.description:
            render.result(model.description)
        render.result(
            f"Type: {model.modality}    Credits: {model.cost.describe()}"
            + (f"    Features: {', '.join(model.features)}" if model.features else "")
        )
        render.result("")
        rows = [
            [
                p.name + (" *" if p.required else ""),
                p.type if p.type != "array" else f"array of {p.items_type or 'any'}",
                "" if p.default is None else json.dumps(p.default),
                _allowed(p.enum, p.minimum, p.maximum),
                p.description,
            ]
            for p in parameters(schema)
        ]
        render.table(PARAMETER_COLUMNS, rows, empty="This model declares no parameters.")
        render.note(f'* required. Example: pixeldojo run {model.id} "your prompt" -p key=value')


@app.command(
    "schema",
    epilog="Example:\n\n  pixeldojo models schema flux-dev > flux-dev.schema.json",
    cls=PixelDojoCommand,
)
def schema(
    ctx: typer.Context,
    model_id: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Model id, e.g. flux-dev.", autocompletion=complete_model
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Accepted for symmetry: the output is always JSON.")
    ] = False,
) -> None:
    """Print the model's raw request schema (JSON Schema) on stdout.

    The same schema `run` checks inputs against before anything is spent;
    useful to validate inputs in your own tools.
    """
    state = get_state(ctx)
    with state.guard(json_output=True):
        state.render.json(state.client().get_schema(model_id))
