"""SKILL.md for coding assistants: how to drive `pixeldojo`, from the command tree.

The command list, the global options and the exit codes are generated from
`reference.walk()` (as docs/cli.md and the man pages are), so the skill names
every command there is, new ones included, and cannot drift from `--help`.
Only the few lines of advice in `GUIDE` are written by hand.
"""

from __future__ import annotations

from typing import Any

from pixeldojo_cli.cli.argv import GLOBAL_FLAGS, GLOBAL_OPTIONS
from pixeldojo_cli.cli.help import short_help, usage_line
from pixeldojo_cli.cli.reference import Entry, walk
from pixeldojo_cli.core.version import __version__

SKILL_NAME = "pixeldojo"
SKILL_FILE = "SKILL.md"

DESCRIPTION = (
    "Generate images and videos with PixelDojo's API through the pixeldojo command "
    "line: find a model and its inputs, check inputs and cost before spending, run "
    "jobs, save outputs to disk before they expire, and search the local job "
    "history. Use when asked to make, download or look up PixelDojo images or videos."
)

GUIDE = """\
## How to use it

- Try anything with no key and no credits: `pixeldojo --emulator run flux-dev "a test"`.
- The API key comes from `PIXELDOJO_API_KEY` or `pixeldojo auth login`; never print it.
- Pick a model first: `pixeldojo models --type image`, then `pixeldojo models show MODEL`
  for its inputs. Inputs are checked against the model's schema before anything is spent;
  `pixeldojo run MODEL "PROMPT" --dry-run` prints the request and its cost.
- `pixeldojo run MODEL "PROMPT" -p KEY=VALUE -o DIR` submits, waits, downloads, and prints
  each saved file's path on stdout, one per line (status goes to stderr);
  `<jobId>.json` beside the files records the job, model and inputs.
- Add `--json` for JSON on stdout (an error too: `{"error": {"code": ..., "message": ...,
  "exit_code": ...}}`), and act on the exit code (below), not on the wording.
- Outputs expire 24 hours after a job ends: `pixeldojo download --pending` saves every job
  not yet saved; `pixeldojo jobs wait JOB_ID` resumes a job that timed out (exit 9).
- Past jobs: `pixeldojo jobs list --local` (the local ledger; no network).
- `pixeldojo help COMMAND` prints any command's full help page.
"""


def _usage(entry: Entry) -> str:
    """`pixeldojo jobs wait [OPTIONS] JOB_ID...` on one line."""
    return usage_line(entry.command, entry.ctx, 10_000).removeprefix("Usage: ")


def _options(command: Any, only: frozenset[str] | None = None) -> str:
    """The option names a command takes, `-o/--output-dir` style, `--help` left out
    (and, given `only`, those not named in it)."""
    names = []
    for param in command.params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        if "--help" in param.opts or (only is not None and not only & set(param.opts)):
            continue
        names.append("/".join(sorted(param.opts, key=lambda o: o.startswith("--"))))
    return ", ".join(f"`{name}`" for name in names)


def _command_lines(entries: list[Entry]) -> list[str]:
    """One bullet per command (a group's bullet first, then its subcommands)."""
    lines = []
    for entry in entries[1:]:
        if entry.is_group:
            lines.append(f"\n### `{entry.title}`\n\n{short_help(entry.command)}\n")
            continue
        line = f"- `{_usage(entry)}`: {short_help(entry.command)}"
        if options := _options(entry.command):
            line += f" Options: {options}."
        lines.append(line)
    return lines


def _exit_codes(root: Any) -> str:
    """The exit-code table of the root help's epilog, as a compact list."""
    epilog = str(root.epilog or "")
    table = epilog.partition("Exit codes:")[2].strip().splitlines()
    rows = [" ".join(row.split(maxsplit=1)) for row in table if row.strip()]
    return "\n".join(f"- {row}" for row in rows)


def skill_markdown(root: Any) -> str:
    """The whole SKILL.md for the command tree `root`: front matter, the guide, then
    the generated reference."""
    entries = walk(root)
    parts = [
        f"---\nname: {SKILL_NAME}\ndescription: {DESCRIPTION}\n---\n",
        f"# pixeldojo\n\n`pixeldojo` (pixeldojo-cli {__version__}) runs PixelDojo's image and",
        "video models from a shell. `pixeldojo skill` generates this file from the command",
        "tree.\n",
        GUIDE,
        "## Global options\n\nGiven before or after the command: "
        + _options(root, GLOBAL_FLAGS | GLOBAL_OPTIONS)
        + ".\n",
        "## Commands\n",
        *_command_lines(entries),
        "\n## Exit codes\n",
        _exit_codes(root),
    ]
    return "\n".join(parts) + "\n"
