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
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from pixeldojo_cli.core.errors import ConfigError, UploadError, UsageError
from pixeldojo_cli.core.redact import redact
from pixeldojo_cli.core.text import safe_text
from pixeldojo_cli.inputs.local_files import LocalFile, copy_checked, read_checked

DATA_FILE_CAP = 10 * 1024 * 1024
DATA_REQUEST_CAP = 20 * 1024 * 1024
# The biggest file an upload command is handed (the API fetches it; no model takes more).
COMMAND_FILE_CAP = 1024 * 1024 * 1024
MAX_URL_LENGTH = 4096
# What an upload command may print (stdout and stderr together) before it is stopped.
OUTPUT_CAP = 16 * 1024 * 1024
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
                hint="Choose one in the config file, below its [defaults] line: "
                'upload = "data" (the file goes inline in the request) or upload = "command" '
                'with upload_command = ["my-upload", "{path}"] (a command of yours that prints '
                "the URL); or `pixeldojo config set upload data`, PIXELDOJO_UPLOAD=data, or "
                "--upload data.",
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


def command_args(words: tuple[str, ...], file: LocalFile, path: Path | None = None) -> list[str]:
    """The command's words with the placeholders replaced, in one pass (a value
    holding `{name}` is never replaced again); each word stays one argument.
    `{path}` is `path` (the private copy the command reads) when given."""
    values = {"path": str(path or file.path), "name": safe_name(file), "sha256": file.sha256,
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
    when it cannot start, fails, passes its deadline, prints too much or prints no
    http(s) URL. The command reads a private copy of the file, made from the
    bytes that hash to `file.sha256` (so what it uploads is what the ledger
    records), deleted after."""
    with private_copy(file) as copy:
        args = command_args(settings.command, file, copy)
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
            code = _wait(process, settings.timeout, program, (out, err))
            stdout, stderr = _tail(out), _tail(err).decode("utf-8", "replace")
    if code != 0:
        said = _last_lines(stderr, secret) or "it printed nothing on stderr"
        raise UploadError(
            f"The upload command {program!r} failed (exit {code}) for {file.path.name!r}: {said}"
        )
    return _printed_url(stdout, program, secret)


@contextmanager
def private_copy(file: LocalFile) -> Iterator[Path]:
    """A copy of the checked file, mode 0600 in a new 0700 folder, checked to
    hash to `file.sha256` as it is written (a usage error if the file changed);
    deleted with its folder after. An `UploadError` when it cannot be written."""
    try:
        folder = Path(tempfile.mkdtemp(prefix="pixeldojo-upload-"))
    except OSError as exc:
        why = exc.strerror or exc
        raise UploadError(f"Cannot make a private temporary folder: {why}.") from None
    try:
        try:
            path, fd = _create_private(folder, file)
            with os.fdopen(fd, "wb") as handle:
                copy_checked(file, handle.write, COMMAND_FILE_CAP)
        except OSError as exc:
            raise UploadError(
                f"Cannot copy {file.path.name!r} for the upload command into {folder}: "
                f"{exc.strerror or exc}.",
                hint="Nothing was submitted. Free some space in the temporary folder ($TMPDIR).",
            ) from None
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _create_private(folder: Path, file: LocalFile) -> tuple[Path, int]:
    """A new 0600 file in `folder` named as the original (a command that names
    the upload after `{path}` sees the same name), else by `{name}`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        return folder / file.path.name, os.open(folder / file.path.name, flags, 0o600)
    except OSError:  # a name this file system does not take
        return folder / safe_name(file), os.open(folder / safe_name(file), flags, 0o600)


def _wait(
    process: subprocess.Popen[bytes], timeout: float, program: str, outputs: tuple[IO[bytes], ...]
) -> int:
    """The command's exit code; past the deadline, past `OUTPUT_CAP` of output
    (or on Ctrl-C) it is killed with its process group (`_kill`)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return process.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            if sum(os.fstat(stream.fileno()).st_size for stream in outputs) > OUTPUT_CAP:
                raise UploadError(
                    f"The upload command {program!r} printed more than "
                    f"{OUTPUT_CAP // 2**20} MiB; it was stopped.",
                    hint="Nothing was submitted. Its last line must be the URL.",
                )
            if time.monotonic() >= deadline:
                raise UploadError(
                    f"The upload command {program!r} did not finish within {timeout:g} s; "
                    "it was stopped.",
                    hint="Nothing was submitted. Raise `upload_timeout`, or check the command "
                    "by hand.",
                )
    except BaseException:
        _kill(process, outputs)
        raise


def _kill(process: subprocess.Popen[bytes], outputs: tuple[IO[bytes], ...]) -> None:
    """Kill the command's process group, then (on Linux) any process still
    holding its output files open: a child that left the group (`setsid`) but
    kept the command's stdout or stderr. One that closed them too is out of
    reach (the README says so)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.wait()
    _kill_holders({_identity(stream) for stream in outputs})


def _identity(stream: IO[bytes]) -> tuple[int, int]:
    info = os.fstat(stream.fileno())
    return info.st_dev, info.st_ino


def _kill_holders(files: set[tuple[int, int]]) -> None:
    """SIGKILL every other process (and its own group, when it leads one) with
    one of `files` open, as /proc shows them (best effort; nothing elsewhere)."""
    me = os.getpid()
    try:
        pids = [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return
    for pid in pids:
        if pid != me and _holds(pid, files):
            with suppress(OSError):
                if os.getpgid(pid) == pid and pid != os.getpgrp():
                    os.killpg(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)


def _holds(pid: int, files: set[tuple[int, int]]) -> bool:
    try:
        with os.scandir(f"/proc/{pid}/fd") as fds:
            for fd in fds:
                with suppress(OSError):
                    info = os.stat(fd.path)
                    if (info.st_dev, info.st_ino) in files:
                        return True
    except OSError:
        pass
    return False


def _tail(stream: IO[bytes]) -> bytes:
    """The last `_TAIL_BYTES` a command wrote."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _TAIL_BYTES))
    return stream.read()


def _last_lines(text: str, secret: str | None, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()][-count:]
    joined = " | ".join(lines)
    joined = redact(joined, secret) if secret else joined
    return safe_text(joined[-400:])


def _printed_url(stdout: bytes, program: str, secret: str | None) -> str:
    """The last non-empty line the command printed, as a checked URL: UTF-8
    text (bytes that are not are never "repaired" into a URL), http(s)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise UploadError(f"The upload command {program!r} printed no URL.")
    try:
        url = lines[-1].decode("utf-8").strip()
        problem = url_problem(url)
    except UnicodeDecodeError:
        url, problem = lines[-1].decode("utf-8", "replace"), "is not UTF-8 text"
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
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, or over 65535
        return "is not an http(s) URL with a valid port"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "is not an http(s) URL"
    if port == 0:
        return "is not an http(s) URL with a valid port"
    if any(char.isspace() or not char.isprintable() for char in url):
        return "holds spaces or control characters"
    return None
