"""`pixeldojo mcp`'s server: the tools of `mcp_tools`, served on stdio with the
official MCP SDK (the `[mcp]` extra). Only that command imports this module.

Each tool answers with the CLI's `--json` shape, as structured content and as
its JSON text; an error is a tool error (`isError`) carrying the line the CLI
prints and the CLI's `{"error": {"code", "message", "exit_code"}}` document.
Every string in an answer has its secrets masked and is made safe in JSON (`safe_in_json`).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from pixeldojo_cli.cli.mcp_tools import HISTORY_LIMIT, THUMBNAIL_SIZE, Tools, thumbnail_png
from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.cli.state import unexpected_error
from pixeldojo_cli.core import cancelling
from pixeldojo_cli.core.errors import PixelDojoError
from pixeldojo_cli.core.text import dump_json, safe_in_json, safe_text
from pixeldojo_cli.core.version import __version__

INSTRUCTIONS = """\
PixelDojo image and video generation. Every output is saved to disk before its
link expires and recorded in a local history. Call list_models (or model_schema
for one model's inputs), estimate_cost to check inputs and price without
spending, then generate: it answers with the saved files' absolute paths. For
long jobs (video), generate with wait=false, then wait_for_job."""

Model = Annotated[str, Field(description="Model id, e.g. flux-dev (see list_models).")]
Prompt = Annotated[str | None, Field(description="The prompt (fills the model's `prompt` input).")]
Inputs = Annotated[
    dict[str, Any] | None,
    Field(description="Other inputs, as a JSON object, checked against model_schema."),
]
Seed = Annotated[int | None, Field(description="Shortcut for inputs.seed.")]
JobId = Annotated[str, Field(description="The job's id, as generate returned it.")]
Timeout = Annotated[
    float | None,
    Field(description="Seconds to wait at most (default: the server's --timeout or none)."),
]

ModelType = Annotated[Literal["image", "video"] | None, Field(description="Only this type.")]
Feature = Annotated[
    Literal["lora", "editing", "audio"] | None, Field(description="Only with this feature.")
]
Unsaved = Annotated[bool, Field(description="Only jobs whose outputs are not saved.")]
Limit = Annotated[int, Field(description="At most this many, newest first.")]

LOOK = ToolAnnotations(read_only_hint=True, open_world_hint=True)
SPEND = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
SAVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)


def safe_value(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` with every string (keys too) masked and made safe in JSON: a
    prompt's newline stays a newline (JSON escapes it, and an assistant copying
    `body` back resubmits the same text); what JSON writes raw (bidi and other
    format characters, C1) is made visible (`safe_in_json`)."""
    if isinstance(value, str):
        return safe_in_json(scrub(value))
    if isinstance(value, dict):
        return {safe_value(str(k), scrub): safe_value(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_value(v, scrub) for v in value]
    return value


def failed(render: Renderer, exc: PixelDojoError) -> CallToolResult:
    """A tool error: the CLI's error line and hint, and its `--json` error document."""
    render.error(exc)  # the server's log (stderr) says it too
    line, hint = render.error_text(exc)
    document = safe_value(render.error_document(exc), render.scrub)
    text = f"{line}\n{hint}" if hint else line
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=document, is_error=True
    )


def answered(
    render: Renderer, call: Callable[[], dict[str, Any]], cancel: threading.Event | None = None
) -> CallToolResult:
    """Run one tool's work: its answer, or the error the CLI would print for it.
    A call that ended because it was cancelled (or its client went away) ends
    quietly: nobody reads its answer, and what broke it is no bug."""
    try:
        document = call()
    except PixelDojoError as exc:
        if cancel is not None and cancel.is_set():
            render.info(f"A cancelled call ended: {render.error_text(exc)[0]}")
            return gone()
        return failed(render, exc)
    except Exception as exc:
        if cancel is not None and cancel.is_set():
            return gone()
        return failed(render, unexpected_error(exc))  # a bug, reported as the CLI reports one
    except KeyboardInterrupt:  # a pause cut short by the cancel event (`core.cancelling`)
        if cancel is not None and cancel.is_set():
            return gone()
        raise
    safe = safe_value(document, render.scrub)
    text = TextContent(type="text", text=dump_json(safe))
    return CallToolResult(content=[text], structured_content=safe)


def gone() -> CallToolResult:
    """The answer of a call that was cancelled: the SDK sends nothing for it."""
    return CallToolResult(content=[TextContent(type="text", text="Cancelled.")], is_error=True)


def with_thumbnail(result: CallToolResult) -> CallToolResult:
    """`generate`'s answer with a small PNG of its first picture (never the output
    itself); `thumbnail` in the answer says what came, or why nothing did."""
    from pixeldojo_cli.cli.picture import NoPreview

    answer = result.structured_content
    if result.is_error or not isinstance(answer, dict):
        return result
    pictures = [f["path"] for f in answer.get("files", []) if _is_picture(f["path"])]
    image: ImageContent | None = None
    try:
        if not pictures:
            raise NoPreview("no picture among the outputs")
        data = base64.b64encode(thumbnail_png(Path(pictures[0]))).decode("ascii")
        image = ImageContent(type="image", data=data, mime_type="image/png")
        answer["thumbnail"] = "image/png"
    except NoPreview as exc:
        answer["thumbnail"] = safe_text(f"none: {exc}")
    content: list[Any] = [TextContent(type="text", text=dump_json(answer))]
    return CallToolResult(
        content=[*content, *([image] if image else [])], structured_content=answer
    )


def _is_picture(path: str) -> bool:
    return path.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif"))


async def in_thread(
    tools: Tools,
    call: Callable[[], dict[str, Any]],
    then: Callable[[CallToolResult], CallToolResult] | None = None,
) -> CallToolResult:
    """The engine is synchronous: run it (and `then` on its answer) on a worker
    thread, under the call's own cancel event (`Tools.open_call`). The SDK
    cancelling the call (`notifications/cancelled`, the client gone) cancels
    this task: the event is set, and the thread's next pause ends its work."""
    cancel = tools.open_call()

    def work() -> CallToolResult:
        with cancelling.cancelled_by(cancel):
            result = answered(tools.state.render, call, cancel)
            return then(result) if then is not None else result

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    finally:
        tools.close_call(cancel)


def build_server(tools: Tools) -> MCPServer[Any]:
    """The server and its tools."""
    server: MCPServer[Any] = MCPServer(
        "pixeldojo", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    _catalogue_tools(server, tools)
    _job_tools(server, tools)
    _history_tools(server, tools)
    return server


def _catalogue_tools(server: MCPServer[Any], tools: Tools) -> None:

    @server.tool(annotations=LOOK)
    async def list_models(type: ModelType = None, feature: Feature = None) -> CallToolResult:
        """List the models, as {"models": [{id, name, type, description, creditCost,
        features}], "count"}."""
        return await in_thread(tools, lambda: tools.list_models(type, feature))

    @server.tool(annotations=LOOK)
    async def model_schema(model: Model) -> CallToolResult:
        """One model and the inputs it takes: {id, name, type, creditCost, features,
        requestSchema (a JSON Schema)}."""
        return await in_thread(tools, lambda: tools.model_schema(model))

    @server.tool(annotations=LOOK)
    async def estimate_cost(
        model: Model, prompt: Prompt = None, inputs: Inputs = None, seed: Seed = None
    ) -> CallToolResult:
        """Check inputs against the model's schema and price them; nothing is submitted or
        spent. Returns {model, body, estimatedCredits, submitted: false, sessionSpent,
        maxCredits, creditsLeft}."""
        return await in_thread(tools, lambda: tools.estimate_cost(model, prompt, inputs, seed))


def _job_tools(server: MCPServer[Any], tools: Tools) -> None:

    @server.tool(annotations=SPEND)
    async def generate(
        model: Model,
        prompt: Prompt = None,
        inputs: Inputs = None,
        seed: Seed = None,
        wait: Annotated[bool, Field(description="false: return the job id at once.")] = True,
        timeout_seconds: Timeout = None,
        thumbnail: Annotated[
            bool, Field(description=f"Add a PNG thumbnail ({THUMBNAIL_SIZE} px at most).")
        ] = False,
    ) -> CallToolResult:
        """Generate an image or video: inputs checked (a bad one spends nothing), the job
        submitted (spends credits), followed, and its outputs saved. Returns {jobId, model,
        status, outcome, files: [{path, size, sha256, url}], sidecar, creditsCharged,
        estimatedCredits, seconds, sessionSpent, maxCredits, creditsLeft}; paths are absolute.
        With wait=false: {jobId, status, ...} at once; then call wait_for_job. With
        thumbnail=true, a small PNG of the first picture comes as an image beside it."""
        return await in_thread(
            tools,
            lambda: tools.generate(model, prompt, inputs, seed, wait=wait, timeout=timeout_seconds),
            with_thumbnail if thumbnail and wait else None,
        )

    @server.tool(annotations=LOOK)
    async def job_status(job_id: JobId) -> CallToolResult:
        """A job as the API says now (status, outputs), plus files already saved here and
        `saved` (every output on disk)."""
        return await in_thread(tools, lambda: tools.job_status(job_id))

    @server.tool(annotations=SAVE)
    async def wait_for_job(job_id: JobId, timeout_seconds: Timeout = None) -> CallToolResult:
        """Wait for a job to end and save its outputs. Returns the job with outcome, files
        (absolute paths) and sidecar; a failed or timed-out job is an error."""
        return await in_thread(tools, lambda: tools.wait_for_job(job_id, timeout_seconds))

    @server.tool(annotations=SAVE)
    async def download_job(job_id: JobId) -> CallToolResult:
        """Save a completed job's outputs (files already on disk and complete are kept).
        Returns the job with outcome, files (absolute paths) and sidecar."""
        return await in_thread(tools, lambda: tools.download_job(job_id))


def _history_tools(server: MCPServer[Any], tools: Tools) -> None:

    @server.tool(annotations=LOOK)
    async def search_history(
        search: Annotated[str | None, Field(description="Text in any input (the prompt).")] = None,
        model: Annotated[str | None, Field(description="Model id, or a glob with *.")] = None,
        status: Annotated[str | None, Field(description="e.g. completed, failed.")] = None,
        since: Annotated[
            str | None, Field(description="A duration back from now (2h, 3d) or a date.")
        ] = None,
        unsaved: Unsaved = False,
        limit: Limit = HISTORY_LIMIT,
    ) -> CallToolResult:
        """The jobs submitted from this machine (the local ledger), newest first, as
        `jobs list --local --json`: {"jobs": [{jobId, model, status, submittedAt,
        inputs, files, saved, expired, ...}], "count"}."""
        return await in_thread(
            tools,
            lambda: tools.search_history(
                model=model,
                status=status,
                since=since,
                unsaved=unsaved,
                search=search,
                limit=limit,
            ),
        )


class WatchedStream:
    """The server's read stream, calling `on_end` the moment the client closes
    its side: calls in flight stop then, not once the server loop has ended."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    def __getattr__(self, name: str) -> Any:  # last_context and the like
        return getattr(self._inner, name)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> WatchedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _serve_stdio(server: MCPServer[Any], tools: Tools) -> None:
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server  # what `run("stdio")` serves, with the read side watched
    async with stdio_server() as (read_stream, write_stream):
        await lowlevel.run(
            WatchedStream(read_stream, tools.shutdown),
            write_stream,
            lowlevel.create_initialization_options(),
        )


def serve(tools: Tools) -> None:
    """Serve on stdio until the client closes it; then end the waits still going."""
    server = build_server(tools)
    try:
        anyio.run(_serve_stdio, server, tools)
    finally:
        tools.shutdown()
