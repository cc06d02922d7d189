"""How a local file reaches the API, which publishes no upload route: the
uploader the user chose (`upload`), as one frozen value, and the two ways.

- `data`: the file goes inline, as a base64 `data:` URI, up to `DATA_FILE_CAP`
  per file and `DATA_REQUEST_CAP` for all the files of one request.
- `command`: `upload_command` runs once per file, as an argument list (no
  shell), with `{path}`, `{name}`, `{sha256}` and `{mime}` replaced inside its
  words (each word stays one argument). It runs without the API key in its
  environment, under a deadline; the last non-empty line it prints is the URL,
  which must be http(s). Any failure is one `UploadError` line (exit 10).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from pixeldojo_cli.core.errors import ConfigError, UploadError, UsageError
from pixeldojo_cli.core.redact import redact
from pixeldojo_cli.core.text import safe_text
from pixeldojo_cli.inputs.local_files import LocalFile, read_checked

DATA_FILE_CAP = 10 * 1024 * 1024
DATA_REQUEST_CAP = 20 * 1024 * 1024
# The biggest file an upload command is handed (the API fetches it; no model takes more).
COMMAND_FILE_CAP = 1024 * 1024 * 1024
MAX_URL_LENGTH = 4096
_TAIL_BYTES = 64 * 1024
_PLACEHOLDER = re.compile(r"\{(path|name|sha256|mime)\}")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
KEY_VARIABLE = "PIXELDOJO_API_KEY"


@dataclass(frozen=True)
class UploadSettings:
    """The uploader in force: `way` (`data`, `command`, or None: `@PATH` refused),
    the command's words, its deadline, how long an upload's URL is reused, and
    where `upload` was set (for messages)."""

    way: str | None = None
    command: tuple[str, ...] = ()
    timeout: float = 120.0
    ttl: float = 3600.0
    source: str = "default"

    @property
    def file_cap(self) -> int:
        """The biggest file this uploader sends."""
        return DATA_FILE_CAP if self.way == "data" else COMMAND_FILE_CAP

    @property
    def identity(self) -> str:
        """Which uploader made a URL: the same file by another command is uploaded again."""
        if self.way != "command":
            return str(self.way)
        words = json.dumps(list(self.command), ensure_ascii=False)
        return "command:" + hashlib.sha256(words.encode("utf-8", "replace")).hexdigest()[:32]

    def check_ready(self, label: str) -> None:
        """A usage or config error (exit 2, nothing spent) when no file can be sent."""
        if self.way is None:
            raise UsageError(
                f"{label} names a local file, but no way to upload files is set.",
                hint='Choose one in the config file: upload = "data" (the file goes inline in '
                'the request) or upload = "command" with upload_command = ["my-upload", '
                '"{path}"] (a command of yours that prints the URL); or `pixeldojo config set '
                "upload data`, PIXELDOJO_UPLOAD=data, or --upload data.",
            )
        if self.way == "command" and not self.command:
            raise ConfigError(
                "upload is command, but upload_command is not set.",
                hint="pixeldojo config set upload_command 'my-upload {path}'",
            )


def data_uri(file: LocalFile) -> str:
    """The file as a base64 `data:` URI (read again, and checked to be the file
    that was checked)."""
    data = read_checked(file, DATA_FILE_CAP)
    return f"data:{file.mime};base64,{base64.b64encode(data).decode('ascii')}"


def check_data_request(files: list[LocalFile]) -> None:
    """The files of one request fit in `DATA_REQUEST_CAP` (a usage error if not)."""
    total = sum(file.size for file in files)
    if total > DATA_REQUEST_CAP:
        raise UsageError(
            f"The files of this request come to {total / 2**20:.1f} MiB; upload = data sends at "
            f"most {DATA_REQUEST_CAP // 2**20} MiB in one request.",
            hint="Use fewer or smaller files, or set upload = command (see the README).",
        )


def safe_name(file: LocalFile) -> str:
    """`{name}`: the file's name with only letters, digits, `.`, `_` and `-`, never
    starting with `-` or `.` (so no command takes it for an option)."""
    name = _SAFE_NAME.sub("_", file.path.name).lstrip("-.")
    return name or f"file-{file.sha256[:12]}"


def command_args(words: tuple[str, ...], file: LocalFile) -> list[str]:
    """The command's words with the placeholders replaced, in one pass (a value
    holding `{name}` is never replaced again); each word stays one argument."""
    values = {"path": str(file.path), "name": safe_name(file), "sha256": file.sha256,
              "mime": file.mime}  # fmt: skip
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], word) for word in words]


def command_env(secret: str | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the command runs in: ours, without the API key (its
    variable, and any variable holding the key)."""
    env = os.environ if env is None else env
    return {
        name: value
        for name, value in env.items()
        if name != KEY_VARIABLE and not (secret and secret in value)
    }


def run_upload_command(settings: UploadSettings, file: LocalFile, secret: str | None) -> str:
    """Run `upload_command` for one file; the URL it printed, checked. `UploadError`
    when it cannot start, fails, passes its deadline or prints no http(s) URL."""
    args = command_args(settings.command, file)
    program = safe_text(args[0][:80])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=command_env(secret),
                start_new_session=True,  # its children are ended with it at the deadline
            )
        except OSError as exc:
            raise UploadError(
                f"The upload command {program!r} could not be started: {exc.strerror or exc}."
            ) from None
        code = _wait(process, settings.timeout, program)
        stdout, stderr = _tail(out), _tail(err)
    if code != 0:
        said = _last_lines(stderr, secret) or "it printed nothing on stderr"
        raise UploadError(
            f"The upload command {program!r} failed (exit {code}) for {file.path.name!r}: {said}"
        )
    return _printed_url(stdout, program, secret)


def _wait(process: subprocess.Popen[bytes], timeout: float, program: str) -> int:
    """The command's exit code; past the deadline (or on Ctrl-C) its whole process
    group is killed."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise UploadError(
            f"The upload command {program!r} did not finish within {timeout:g} s; it was stopped.",
            hint="Nothing was submitted. Raise `upload_timeout`, or check the command by hand.",
        ) from None
    except BaseException:
        _kill(process)
        raise


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.wait()


def _tail(stream: IO[bytes]) -> str:
    """The last `_TAIL_BYTES` a command wrote, as text."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _TAIL_BYTES))
    return stream.read().decode("utf-8", "replace")


def _last_lines(text: str, secret: str | None, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()][-count:]
    joined = " | ".join(lines)
    joined = redact(joined, secret) if secret else joined
    return safe_text(joined[-400:])


def _printed_url(stdout: str, program: str, secret: str | None) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise UploadError(f"The upload command {program!r} printed no URL.")
    url = lines[-1]
    problem = url_problem(url)
    if problem:
        shown = safe_text((redact(url, secret) if secret else url)[:120])
        raise UploadError(
            f"The upload command {program!r} printed {shown!r} as its last line, which {problem}.",
            hint="Its last line must be the file's http(s) URL. Nothing was submitted.",
        )
    return url


def url_problem(url: str) -> str | None:
    """Why `url` cannot be sent as a file's URL (None: it can): http(s), a host,
    one line of printable text without spaces, not too long."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not an http(s) URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "is not an http(s) URL"
    if any(char.isspace() or not char.isprintable() for char in url):
        return "holds spaces or control characters"
    return None
