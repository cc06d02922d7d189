"""`pixeldojo inspect FILE...`: how a saved output was made, from the metadata
in it, or from the sidecar beside it when that is gone; what another program
or a hostile server wrote is shown as text only, made safe, cut; a file that
holds none is one line and exit 6, a path that is no regular file one line
and exit 2, never a traceback, never a read of a huge file whole."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, Invoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def saved_output(cli: Invoke, *args: str) -> Path:
    result = cli(
        "run", "flux-dev", "a red fox", "-p", "aspect_ratio=16:9", "-o", "out", *args, *FAST
    )
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip())


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    body = kind + data
    value = zlib.crc32(body) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + body + struct.pack(">I", value)


def png_with(*chunks: bytes) -> bytes:
    """A valid 1x1 PNG with `chunks` after IHDR."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\x01\x02\x03"))
    return PNG_SIGNATURE + ihdr + b"".join(chunks) + idat + chunk(b"IEND", b"")


def itxt(keyword: bytes, text: bytes) -> bytes:
    return keyword + b"\x00\x00\x00\x00\x00" + text


def ours(**fields: Any) -> bytes:
    document = {"pixeldojo": 1, "jobId": "job_x", "model": "flux-dev", "inputs": {}, **fields}
    return json.dumps(document).encode()


def one_line_error(result: Any, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_inspect_prints_how_a_saved_output_was_made(cli: Invoke, emulator: Emulator) -> None:
    path = saved_output(cli)
    [job_id] = emulator.jobs
    seed = json.loads(emulator.requests_to("POST", r"/run$")[0].body)["seed"]
    result = cli("inspect", str(path))
    assert result.exit_code == 0, result.stderr
    shown = result.stdout
    for line in (
        "  Model:    flux-dev",
        "  Prompt:   a red fox",
        f"  Seed:     {seed}",
        "  Inputs:   aspect_ratio=16:9",
        f"  Job:      {job_id}",
        f"  API:      {emulator.base_url}",
        "  Credits:  1",
        '  From:     metadata in the file (PNG iTXt chunk "pixeldojo")',
    ):
        assert line in shown.splitlines(), shown
    assert "  Created:  " in shown


def test_inspect_json_is_one_document_per_file(cli: Invoke, emulator: Emulator) -> None:
    path = saved_output(cli)
    result = cli("inspect", str(path), str(path), "--json")
    assert result.exit_code == 0, result.stderr
    documents = json.loads(result.stdout)
    assert len(documents) == 2 and documents[0] == documents[1]
    document = documents[0]
    assert list(document) == [
        *("path", "format", "source", "where", "jobId", "model", "prompt", "seed"),
        *("inputs", "api", "createdAt", "credits", "truncated", "otherMetadata", "problems"),
    ]
    assert document["path"] == str(path.absolute()) and document["format"] == "png"
    assert document["source"] == "embedded" and document["jobId"] == next(iter(emulator.jobs))
    assert document["inputs"] == {
        "prompt": "a red fox",
        "aspect_ratio": "16:9",
        "seed": document["seed"],
    }
    assert document["otherMetadata"] == [] and document["problems"] == []


def strip_metadata(path: Path) -> None:
    """The picture saved again by another program: the pixels, no text chunks."""
    with Image.open(path) as picture:
        picture.load()
        copy = picture.copy()
    copy.save(path, "PNG")


def test_inspect_falls_back_to_the_sidecar_when_the_metadata_is_gone(
    cli: Invoke, emulator: Emulator
) -> None:
    path = saved_output(cli)
    strip_metadata(path)
    result = cli("inspect", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    [document] = json.loads(result.stdout)
    assert document["source"] == "sidecar" and document["where"] == f"{path.stem[:-2]}.json"
    assert document["jobId"] == next(iter(emulator.jobs)) and document["prompt"] == "a red fox"
    assert isinstance(document["seed"], int) and document["credits"] == 1
    human = cli("inspect", str(path))
    assert "the file's own metadata is gone" in human.stdout


def test_the_sidecar_is_believed_for_a_copy_only_by_its_hash(cli: Invoke) -> None:
    import hashlib

    path = saved_output(cli)
    strip_metadata(path)
    copy = path.with_name(path.name.replace("-1.", "-7."))  # the job's name, not a listed one
    copy.write_bytes(path.read_bytes())
    assert cli("inspect", str(copy)).exit_code == 6  # the hash listed is of the file as saved
    sidecar = path.with_name(f"{path.stem[:-2]}.json")
    meta = json.loads(sidecar.read_text())
    meta["files"][0]["sha256"] = hashlib.sha256(copy.read_bytes()).hexdigest()
    meta["files"][0]["size"] = copy.stat().st_size
    sidecar.write_text(json.dumps(meta))
    result = cli("inspect", str(copy), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["source"] == "sidecar"


def test_a_sidecar_of_another_job_is_not_believed(cli: Invoke) -> None:
    path = saved_output(cli)
    strip_metadata(path)
    sidecar = path.with_name(f"{path.stem[:-2]}.json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "jobId": "job_someone_else"}))
    line = one_line_error(cli("inspect", str(path)), 6)
    assert "holds no pixeldojo metadata" in line


def test_a_picture_from_another_program_is_one_line_and_exit_6(cli: Invoke) -> None:
    Image.new("RGB", (4, 4)).save("plain.png")
    line = one_line_error(cli("inspect", "plain.png"), 6)
    assert "'plain.png' holds no pixeldojo metadata" in line
    Path("notes.txt").write_text("hello")
    one_line_error(cli("inspect", "notes.txt"), 6)
    as_json = cli("inspect", "plain.png", "--json")
    assert as_json.exit_code == 6
    assert json.loads(as_json.stdout)[0]["error"]["code"] == "not_found"


def test_another_programs_metadata_is_shown_as_safe_text_only(cli: Invoke) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\x1b]0;pwned\x07\nSteps: 20, Seed: 5\u202e")
    info.add_text("pixeldojo", "not json \x1b[2J")
    Image.new("RGB", (4, 4)).save("other.png", pnginfo=info)
    result = cli("inspect", "other.png")
    one_line_error(result, 6)
    assert (
        "\x1b" not in result.output
        and "\u202e" not in result.output
        and "\x07" not in result.output
    )
    assert "parameters: a cat\\u001b]0;pwned\\u0007\\nSteps: 20, Seed: 5\\u202e" in result.stdout


def test_control_characters_in_our_own_document_are_shown_escaped(cli: Invoke) -> None:
    text = ours(inputs={"prompt": "fox\x1b[31m red\r\nnext", "seed": 3, "style\x1b": "\x9b1m"})
    # (named as this client names job_x's file: a document is believed only then)
    Path("job_x-1.png").write_bytes(png_with(chunk(b"iTXt", itxt(b"pixeldojo", text))))
    result = cli("inspect", "job_x-1.png")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.output and "\x9b" not in result.output and "\r" not in result.output
    assert "  Prompt:   fox\\u001b[31m red\\r\\nnext" in result.stdout.splitlines()


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        (
            "wrong-crc",
            png_with(chunk(b"iTXt", itxt(b"pixeldojo", ours()), crc=1234)),
            "wrong CRC",
        ),
        (
            "deeply-nested",
            png_with(chunk(b"iTXt", itxt(b"pixeldojo", b"[" * 5000 + b"]" * 5000))),
            "nested",
        ),
        (
            "huge-chunk",
            png_with(chunk(b"iTXt", itxt(b"pixeldojo", ours(pad="x" * (2 * 2**20))))),
            "too big to read",
        ),
        ("truncated", png_with(chunk(b"iTXt", itxt(b"pixeldojo", ours())))[:45], "cut short"),
        (
            "zip-bomb",
            png_with(chunk(b"zTXt", b"pixeldojo\x00\x00" + zlib.compress(b" " * 50 * 2**20))),
            "inflates past the limit",
        ),
    ],
    ids=["wrong-crc", "deeply-nested", "huge-chunk", "truncated", "zip-bomb"],
)
def test_hostile_metadata_is_ignored_with_one_line_and_exit_6(
    cli: Invoke, name: str, data: bytes, problem: str
) -> None:
    Path(f"{name}.png").write_bytes(data)
    result = cli("inspect", f"{name}.png")
    assert result.exit_code == 6, result.output
    assert "Traceback" not in result.output
    assert problem in result.stderr


def test_a_truncated_picture_whose_metadata_survived_is_still_read(cli: Invoke) -> None:
    whole = png_with(chunk(b"iTXt", itxt(b"pixeldojo", ours(inputs={"seed": 8}))))
    Path("job_x-1.png").write_bytes(whole[:-20])
    result = cli("inspect", "job_x-1.png", "--json")
    assert result.exit_code == 0, result.stderr
    [document] = json.loads(result.stdout)
    assert document["seed"] == 8 and any("cut short" in p for p in document["problems"])


def test_a_huge_file_is_never_read_whole(cli: Invoke, tmp_path: Path) -> None:
    """A 3 GB sparse file whose one chunk claims 2 GB: the walk seeks past it."""
    head = png_with()[:33] + struct.pack(">I", 2**31 - 1) + b"tEXt"
    with open("huge.png", "wb") as handle:
        handle.write(head)
        handle.truncate(3 * 2**30)
    result = cli("inspect", "huge.png")
    one_line_error(result, 6)
    assert "too big to read" in result.stderr


def test_a_folder_or_a_fifo_or_a_missing_file_is_one_line_and_exit_2(
    cli: Invoke, tmp_path: Path
) -> None:
    Path("folder").mkdir()
    os.mkfifo("fifo")
    for path in ("folder", "fifo", "missing.png"):
        line = one_line_error(cli("inspect", path), 2)
        assert f"Cannot read '{path}'" in line


def test_several_files_each_get_their_answer_and_the_highest_exit_code(cli: Invoke) -> None:
    path = saved_output(cli)
    Path("notes.txt").write_text("hello")
    result = cli("inspect", str(path), "notes.txt", "nothere.png")
    assert result.exit_code == 6
    assert "  Model:    flux-dev" in result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 2


def test_inspect_without_a_file_shows_its_help(cli: Invoke) -> None:
    result = cli("inspect")
    assert "pixeldojo inspect out/job_123-1.png" in result.output


def test_jpeg_and_webp_without_ours_show_their_xmp_as_text(cli: Invoke) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/>\x1b</x:xmpmeta>'
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "JPEG", xmp=xmp)
    Path("x.jpg").write_bytes(out.getvalue())
    result = cli("inspect", "x.jpg")
    one_line_error(result, 6)
    assert "XMP: <x:xmpmeta" in result.stdout and "\x1b" not in result.output


def test_read_provenance_gives_what_rerun_submits_again(cli: Invoke, emulator: Emulator) -> None:
    from pixeldojo_cli.store.embedded import read_provenance

    path = saved_output(cli)
    sent = json.loads(emulator.requests_to("POST", r"/run$")[0].body)
    embedded = read_provenance(path)
    assert embedded is not None and embedded.source == "embedded"
    assert (embedded.model, embedded.inputs) == ("flux-dev", sent)
    strip_metadata(path)
    sidecar = read_provenance(path)
    assert sidecar is not None and sidecar.source == "sidecar"
    assert (sidecar.model, sidecar.inputs, sidecar.job_id) == ("flux-dev", sent, embedded.job_id)
    with pytest.raises(OSError):
        read_provenance(Path("missing.png"))
