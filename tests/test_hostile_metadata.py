"""An outside review of auto_seed, metadata inside saved pictures and `inspect`
(issue 29, parts 1-3): a server that puts the key, or a document of ours, into
the file it serves; `inspect` printing the key, believing a forged document,
printing NaN; `--dry-run` of a sweep without the seed the run sends; a JPEG
prompt whose XML escaping outgrows its segment; and the smaller findings."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pixeldojo_cli.core.redact import redact
from pixeldojo_cli.core.text import dump_json, json_line
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.inputs.seeds import seed_range
from pixeldojo_cli.store.embedded import read_embedded, read_provenance
from pixeldojo_cli.store.embedding import embed
from pixeldojo_cli.store.provenance import Provenance
from pixeldojo_cli.store.xmp import packet

from conftest import FAST, TEST_KEY, Invoke, make_invoker

KEY = TEST_KEY
MADE = Provenance(
    job_id="job_abc",
    model="flux-dev",
    inputs={"prompt": "a red fox", "seed": 1234},
    api="https://pixeldojo.ai/api/v1",
    created="2025-01-02T03:04:05Z",
    credits=1.0,
)
FORGED = {
    "pixeldojo": 1,
    "jobId": "job_FORGED",
    "model": "evil-model",
    "inputs": {"prompt": "forged by server", "seed": 666},
}


def key_forms(key: str = KEY) -> list[bytes]:
    """The key as a server may echo it: raw, upper case, hex, base64, URL-encoded."""
    raw = key.encode()
    return [raw, key.upper().encode(), raw.hex().encode(), raw.hex().upper().encode(),
            base64.b64encode(raw).rstrip(b"="), "".join(f"%{b:02X}" for b in raw).encode()]  # fmt: skip


def leaks(data: bytes | str) -> list[bytes]:
    if isinstance(data, str):
        data = data.encode()
    return [form for form in key_forms() if form.lower() in data.lower()]


def sample(fmt: str, **options: Any) -> bytes:
    picture = Image.new("RGB", (13, 7))
    picture.putdata([((x * 19) % 256, (y * 37) % 256, 90) for y in range(7) for x in range(13)])
    out = io.BytesIO()
    picture.save(out, fmt, **options)
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        return picture.tobytes()


def chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_with(*chunks: bytes, ihdr_twice: bool = False) -> bytes:
    """A valid PNG (from Pillow) with `chunks` after its IHDR."""
    data = sample("PNG")
    ihdr_end = 8 + 12 + 13
    extra = data[8:ihdr_end] if ihdr_twice else b""
    return data[:ihdr_end] + extra + b"".join(chunks) + data[ihdr_end:]


def jpeg_with_segment(marker: int, data: bytes, jpeg: bytes | None = None) -> bytes:
    jpeg = jpeg or sample("JPEG")
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data + jpeg[2:]


def xmp_segment(xml: bytes) -> bytes:
    return b"http://ns.adobe.com/xap/1.0/\x00" + xml


def stamped(data: bytes, tmp_path: Path, made: Provenance | None = MADE) -> bytes | None:
    """`data` saved as a download saves it (with `made`, or None: embed_metadata
    off); None when it is kept as served."""
    source, target = tmp_path / "served", tmp_path / "saved"
    source.write_bytes(data)
    with source.open("rb") as src, target.open("w+b") as dst:
        done = embed(src, dst, len(data), made, tool="pixeldojo-cli test", secret=KEY)
    return target.read_bytes() if done else None


def serving(make_emulator: Callable[..., Emulator], body: bytes, name: str = "pic.png") -> Invoke:
    """A CLI against an emulator whose every output is `body`."""
    emulator = make_emulator(output_name=name)
    kind = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[name.rsplit(".")[-1]]
    emulator.add_fault(
        "status", target="files", path="/outputs/", status=200, body=body,
        content_type=kind, count=-1,
    )  # fmt: skip
    return make_invoker(emulator)


def saved_picture(folder: Path) -> Path:
    [path] = [p for p in folder.iterdir() if p.suffix != ".json"]
    return path


# --- B1: the key never goes into a saved file, nor onto the screen ------------------------

KEY_CARRIERS = {
    "png-tEXt": lambda: png_with(chunk(b"tEXt", b"Comment\x00" + KEY.encode())),
    "png-zTXt": lambda: png_with(chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(KEY.encode()))),
    "png-iTXt-hex": lambda: png_with(chunk(b"iTXt", b"Note\x00\x00\x00\x00\x00" + KEY.encode().hex().encode())),
    "png-private-chunk": lambda: png_with(chunk(b"prVt", b"k=" + base64.b64encode(KEY.encode()))),
    "jpeg-comment": lambda: jpeg_with_segment(0xFE, b"key: " + KEY.upper().encode()),
    "jpeg-xmp": lambda: jpeg_with_segment(0xE1, xmp_segment(f"<x>{KEY}</x>".encode())),
    "webp-exif": lambda: sample("WEBP", exif=b"Exif\x00\x00" + KEY.encode()),
}  # fmt: skip


@pytest.mark.parametrize("embedding", [True, False], ids=["embedded", "embed-off"])
@pytest.mark.parametrize("name", list(KEY_CARRIERS))
def test_a_key_in_the_served_files_metadata_never_reaches_the_saved_file(
    name: str, embedding: bool, tmp_path: Path
) -> None:
    served = KEY_CARRIERS[name]()
    assert leaks(served) or name == "png-zTXt"  # (compressed there)
    saved = stamped(served, tmp_path, MADE if embedding else None)
    assert saved is not None and not leaks(saved), leaks(saved or b"")
    assert b"zTXt" not in saved  # (the one holding the key compressed: gone too)
    assert pixels(saved) == pixels(served)


def test_a_served_png_whose_comment_holds_the_key_is_saved_without_it(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    served = KEY_CARRIERS["png-tEXt"]()
    result = serving(make_emulator, served)("run", "flux-dev", "a fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    path = saved_picture(tmp_path / "out")
    assert not leaks(path.read_bytes()) and pixels(path.read_bytes()) == pixels(served)
    assert read_embedded(path).provenance is not None  # our own metadata is there


def test_inspect_masks_the_configured_key_a_file_holds(cli: Invoke) -> None:
    """`inspect` builds no client: the key in force is masked all the same."""
    Path("theirs.png").write_bytes(KEY_CARRIERS["png-tEXt"]())
    for args in (("inspect", "theirs.png"), ("inspect", "theirs.png", "--json")):
        result = cli(*args)
        assert result.exit_code == 6, result.output
        assert "Comment" in result.stdout and not leaks(result.output), result.output


def test_inspect_masks_a_key_from_the_config_file_too(cli: Invoke, isolated_env: Path) -> None:
    folder = isolated_env / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(f'[profiles.default]\napi_key = "{KEY}"\n')
    Path("theirs.png").write_bytes(KEY_CARRIERS["png-tEXt"]())
    result = cli("inspect", "theirs.png", "--json", env={"PIXELDOJO_API_KEY": ""})
    assert "Comment" in result.stdout and not leaks(result.output), result.output


def test_jobs_list_local_masks_the_key_in_recorded_inputs(cli: Invoke) -> None:
    """A command that builds no client (`jobs list --local`) masks the key too."""
    result = cli("run", "flux-dev", f"a fox {KEY}", "--no-download", *FAST)
    assert result.exit_code == 0, result.stderr
    for args in (("jobs", "list", "--local"), ("jobs", "list", "--local", "--json")):
        listed = cli(*args)
        assert listed.exit_code == 0, listed.output
        assert "a fox" in listed.stdout and not leaks(listed.output), listed.output


def test_a_key_echoed_as_plain_hex_is_masked() -> None:
    for shown in (KEY.encode().hex(), KEY.encode().hex().upper()):
        assert redact(f"model {shown} here", KEY) == f"model ****{KEY[-4:]} here"


def test_a_key_echoed_as_hex_in_the_model_reaches_neither_picture_nor_sidecar(
    tmp_path: Path,
) -> None:
    echoed = Provenance("job_h", f"flux-{KEY.encode().hex()}", {"prompt": "a fox"})
    saved = stamped(sample("PNG"), tmp_path, echoed)
    assert saved is not None and not leaks(saved)


# --- B2: a server's forged document is never presented as ours ----------------------------

PLANTED_PNG = png_with(
    chunk(b"iTXt", b"pixeldojo\x00\x00\x00\x00\x00" + json.dumps(FORGED).encode())
)
PLANTED_XMP = xmp_segment(packet(json.dumps(FORGED), tool="evil", prompt=None, created=None))


@pytest.mark.parametrize(
    ("served", "name", "settings"),
    [
        (PLANTED_PNG[:-6], "pic.png", {}),
        (b"\xff\xd8" + jpeg_with_segment(0xE1, PLANTED_XMP, b"\xff\xd8")[2:] + b"\xff\xd9",
         "pic.jpg", {}),
        (PLANTED_PNG, "pic.png", {"PIXELDOJO_EMBED_METADATA": "0"}),
    ],
    ids=["png-cut-short", "jpeg-eoi-before-image", "embed-metadata-off"],
)  # fmt: skip
def test_a_forged_document_is_stripped_when_the_file_is_saved_as_served(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    served: bytes,
    name: str,
    settings: dict[str, str],
) -> None:
    cli = serving(make_emulator, served, name)
    result = cli("run", "flux-dev", "a fox", "-o", "out", *FAST, env=settings)
    assert result.exit_code == 0, result.stderr
    path = saved_picture(tmp_path / "out")
    assert b"job_FORGED" not in path.read_bytes()
    made = read_provenance(path)
    assert made is not None and made.source == "sidecar" and made.model == "flux-dev"
    shown = json.loads(cli("inspect", str(path), "--json").stdout)[0]
    assert shown["jobId"] != "job_FORGED" and shown["model"] == "flux-dev"


def test_inspect_does_not_believe_a_document_naming_another_job(cli: Invoke) -> None:
    """A file saved before the fix (or by another tool) holding a forged
    document: its job is not the file name's, so it is shown as text only,
    and `rerun` (read_provenance) never gets its model or inputs."""
    Path("job_real-1.png").write_bytes(PLANTED_PNG)
    result = cli("inspect", "job_real-1.png", "--json")
    assert result.exit_code == 6, result.output
    [document] = json.loads(result.stdout)
    assert document["jobId"] is None and document["model"] is None
    assert any("not verified" in item["label"] for item in document["otherMetadata"])
    assert any("not believed" in problem for problem in document["problems"])
    assert read_provenance(Path("job_real-1.png")) is None


def test_a_forged_document_gives_way_to_the_sidecar_that_lists_the_file(
    cli: Invoke, tmp_path: Path
) -> None:
    result = cli("run", "flux-dev", "a red fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    forged = {**FORGED, "jobId": path.name.rsplit("-", 1)[0]}  # the file name's job, yet...
    sidecar = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    path.write_bytes(
        png_with(chunk(b"iTXt", b"pixeldojo\x00\x00\x00\x00\x00" + json.dumps(forged).encode()))
    )
    assert read_provenance(path) is not None  # the name matches: believed...
    (tmp_path / "out" / f"{forged['jobId']}.json").write_text(
        json.dumps({**sidecar, "jobId": forged["jobId"]})
    )
    assert read_provenance(path).model == "evil-model"  # type: ignore[union-attr]
    # ...unless the sidecar beside it, which lists the file, names another job.
    (tmp_path / "out" / f"{forged['jobId']}.json").write_text(
        json.dumps({**sidecar, "jobId": forged["jobId"] + "x"})
    )
    made = read_provenance(path)
    assert made is None or made.model != "evil-model"


# --- B3: --dry-run shows exactly what is sent ---------------------------------------------


def test_a_sweep_dry_run_shows_the_seed_the_run_sends(cli: Invoke, emulator: Emulator) -> None:
    args = ("run", "flux-dev", "a {red|green} fox", "--matrix", "aspect_ratio=1:1,16:9")
    dry = cli(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    planned = [json.loads(line)["body"] for line in dry.stdout.splitlines()]
    assert all(isinstance(body.get("seed"), int) for body in planned), planned
    ran = cli(*args, "--no-download", "--yes", *FAST)
    assert ran.exit_code == 0, ran.stderr
    sent = [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]
    assert sorted(map(dump_json, sent)) == sorted(map(dump_json, planned))


def test_a_comparison_dry_run_shows_the_seed_the_run_sends(cli: Invoke) -> None:
    dry = cli("compare", "flux-dev,flux-krea-dev", "a fox", "--dry-run")
    assert dry.exit_code == 0, dry.output
    bodies = [json.loads(line)["body"] for line in dry.stdout.splitlines()]
    assert bodies and all(isinstance(body.get("seed"), int) for body in bodies), bodies


# --- B4: no NaN or Infinity in any JSON printed -------------------------------------------


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} in JSON")


def test_inspect_json_never_prints_nan_or_infinity(cli: Invoke) -> None:
    text = (b'{"pixeldojo":1,"jobId":"job_n","model":"m","credits":NaN,'
            b'"inputs":{"seed":1,"cfg":Infinity,"steps":-Infinity,"big":1e999}}')  # fmt: skip
    Path("job_n-1.png").write_bytes(
        png_with(chunk(b"iTXt", b"pixeldojo\x00\x00\x00\x00\x00" + text))
    )
    result = cli("inspect", "job_n-1.png", "--json")
    assert result.exit_code == 0, result.output
    [document] = json.loads(result.stdout, parse_constant=_refuse)
    assert document["credits"] is None and document["inputs"]["cfg"] is None
    assert document["inputs"]["big"] is None and document["seed"] == 1
    assert "NaN" not in cli("inspect", "job_n-1.png").stdout


def test_the_json_printers_write_null_for_numbers_json_has_not() -> None:
    value = {"a": float("nan"), "b": [float("inf"), -float("inf")], "c": 1.5}
    for text in (dump_json(value), json_line(value)):
        assert json.loads(text, parse_constant=_refuse) == {"a": None, "b": [None, None], "c": 1.5}


# --- B5: a JPEG's metadata is sized after XML escaping ------------------------------------


@pytest.mark.parametrize("char", ['"', "&", "<"])
def test_a_jpeg_prompt_heavy_in_xml_specials_still_gets_metadata(char: str, tmp_path: Path) -> None:
    heavy = Provenance("job_q", "flux-dev", {"prompt": char * 14_000, "seed": 77})
    saved = stamped(sample("JPEG"), tmp_path, heavy)
    assert saved is not None
    (tmp_path / "job_q-1.jpg").write_bytes(saved)
    found = read_embedded(tmp_path / "job_q-1.jpg").provenance
    assert found is not None and found.seed == 77 and found.job_id == "job_q"
    assert pixels(saved) == pixels(sample("JPEG"))


# --- the smaller findings -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_another_programs_xmp_is_kept_beside_ours(fmt: str, tmp_path: Path) -> None:
    theirs = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
              b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Make="CameraCo"/></rdf:RDF>'
              b"</x:xmpmeta>")  # fmt: skip
    served = sample(fmt, xmp=theirs)
    saved = stamped(served, tmp_path)
    assert saved is not None and b'tiff:Make="CameraCo"' in saved
    (tmp_path / f"job_abc-1.{fmt.lower()}").write_bytes(saved)
    found = read_embedded(tmp_path / f"job_abc-1.{fmt.lower()}").provenance
    assert found is not None and found.seed == 1234
    assert pixels(saved) == pixels(served)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_what_follows_the_pictures_end_goes_alike_in_every_format(fmt: str, tmp_path: Path) -> None:
    served = sample(fmt) + b"TRAILING-DATA" * 10
    saved = stamped(served, tmp_path)
    assert saved is not None and b"TRAILING-DATA" not in saved
    assert pixels(saved) == pixels(sample(fmt))


def test_a_png_with_two_ihdr_chunks_gets_our_chunks_once(tmp_path: Path) -> None:
    saved = stamped(png_with(ihdr_twice=True), tmp_path)
    assert saved is not None and saved.count(b"iTXtpixeldojo\x00") == 1


@pytest.mark.parametrize(
    "bounds",
    [{"minimum": "5", "maximum": "6"}, {"minimum": True, "maximum": True},
     {"exclusiveMinimum": "0"}],
    ids=["strings", "booleans", "exclusive-string"],
)  # fmt: skip
def test_no_seed_is_picked_when_the_schemas_bounds_cannot_be_read(
    bounds: dict[str, Any], cli: Invoke, emulator: Emulator
) -> None:
    schema = copy.deepcopy(emulator.catalogue["flux-dev"]["requestSchema"])
    schema["properties"]["seed"] = {"type": "integer", **bounds}
    assert seed_range(schema) is None
    emulator.catalogue["flux-dev"]["requestSchema"] = schema
    result = cli("run", "flux-dev", "a fox", "--no-download", *FAST)
    assert result.exit_code == 0, result.stderr
    [body] = [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]
    assert "seed" not in body


def test_exclusive_seed_bounds_are_honoured() -> None:
    schema = {"properties": {"seed": {"type": "integer", "exclusiveMinimum": 0, "maximum": 3}}}
    assert seed_range(schema) == (1, 3)
    draft4 = {"properties": {"seed": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}}}
    assert seed_range(draft4) == (1, 2**31 - 1)


@pytest.mark.parametrize("wait", [True, False], ids=["waited", "no-wait"])
def test_run_json_says_the_seed_it_sent(cli: Invoke, emulator: Emulator, wait: bool) -> None:
    extra = ("--no-download", *FAST) if wait else ("--no-wait",)
    result = cli("run", "flux-dev", "a fox", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    [body] = [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]
    assert json.loads(result.stdout)["seed"] == body["seed"]
