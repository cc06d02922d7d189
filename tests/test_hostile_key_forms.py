"""The key in every reversible form is masked (issue 24, class 10): percent-encoded
in full (any hex case, mixed with plain characters, twice), HTML character
references (decimal, hex, leading zeros, named, with and without `;` where HTML
allows), JSON and Python escapes, base64, in any mix, wherever the key is masked:
errors printed and under --json, `api` output, sidecars and the ledger."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.core.redact import redact
from pixeldojo_cli.emulator import Emulator

from conftest import FAST, TEST_KEY, make_invoker

KEY = "pd_test_Ab/9+x&y<z\"q'w\\e-0123456789"  # made up: never a real key
MASKED = "****6789"


def percent(ch: str, upper: bool = True) -> str:
    return "".join(f"%{b:02X}" if upper else f"%{b:02x}" for b in ch.encode())


def decimal(ch: str) -> str:
    return f"&#{ord(ch)};"


def hexadecimal(ch: str) -> str:
    return f"&#x{ord(ch):x};"


FORMS: dict[str, Callable[[str], str]] = {
    "percent-upper": lambda k: "".join(percent(c) for c in k),
    "percent-lower": lambda k: "".join(percent(c, upper=False) for c in k),
    "percent-mixed-case": lambda k: "".join(percent(c, i % 2 == 0) for i, c in enumerate(k)),
    "percent-mixed-plain": lambda k: "".join(c if i % 2 else percent(c) for i, c in enumerate(k)),
    "percent-twice": lambda k: quote(quote(k, safe=""), safe=""),
    "html-decimal": lambda k: "".join(decimal(c) for c in k),
    "html-decimal-zeros": lambda k: "".join(f"&#000{ord(c)};" for c in k),
    "html-hex": lambda k: "".join(hexadecimal(c) for c in k),
    "html-hex-upper-x": lambda k: "".join(f"&#X{ord(c):04X};" for c in k),
    "html-mixed": lambda k: "".join(
        (c, decimal(c), hexadecimal(c))[i % 3] for i, c in enumerate(k)
    ),
    "html-named": lambda k: html.escape(k).replace("/", "&sol;").replace("_", "&lowbar;"),
    "html-escaped-twice": lambda k: html.escape("".join(decimal(c) for c in k)),
    "json-u-escapes": lambda k: "".join(f"\\u{ord(c):04x}" for c in k),
    "json-u-in-url": lambda k: quote("".join(f"\\u{ord(c):04X}" for c in k), safe=""),
    "python-x-escapes": lambda k: "".join(f"\\x{ord(c):02x}" for c in k),
    "all-mixed": lambda k: "".join(
        (c, percent(c), decimal(c), hexadecimal(c), f"\\u{ord(c):04x}")[i % 5]
        for i, c in enumerate(k)
    ),
    "base64-key-colon": lambda k: base64.b64encode(f"{k}:".encode()).decode(),
}


def unescaped(text: str) -> list[str]:
    """Every reading of `text` a person could undo by hand, applied repeatedly."""
    views = [text]
    for _ in range(3):
        last = views[-1]
        json_u = re.sub(
            r"\\+[ux]([0-9a-fA-F]{4}|[0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), last
        )
        views.append(html.unescape(unquote(json_u)))
    return views


def leaks(text: str, key: str = KEY) -> bool:
    """Whether `text`, undone in every way, holds 8 characters of the key in a row."""
    pieces = {key[i : i + 8].lower() for i in range(len(key) - 7)}
    return any(piece in view.lower() for view in unescaped(text) for piece in pieces)


# --- the redactor -------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS, ids=list(FORMS))
def test_every_reversible_form_of_the_key_is_masked(form: str) -> None:
    shown = FORMS[form](KEY)
    assert leaks(shown) or form.startswith("base64")  # the form does hold the key
    masked = redact(f"before {shown} after", KEY)
    assert shown not in masked and not leaks(masked), masked
    assert masked.startswith("before ") and masked.endswith(" after")
    assert MASKED in masked


@pytest.mark.parametrize(
    ("shown", "key"),
    [
        ("".join(f"&#{ord(c)}" for c in "pd_test_x") + "yz01234567", "pd_test_xyz01234567"),
        ("&#112;d_test_Ab&#47;9&plus;x&amp;y&lt;z&quot;q&apos;w&bsol;e&#45;0123456789", KEY),
        ("&#112d_test_Ab/9+x&ampy&ltz&quotq'w\\e-0123456789", KEY),
        ("%u0070d_test_Ab/9+x&y<z\"q'w\\e-0123456789", KEY),
    ],
    ids=["no-semicolon-before-a-letter", "named", "legacy-named-no-semicolon", "percent-u"],
)
def test_html_references_without_semicolons_and_named_ones_are_masked(shown: str, key: str) -> None:
    assert redact(f"[{shown}]", key) == f"[****{key[-4:]}]"


def test_a_number_reference_that_goes_on_is_another_character_and_is_not_masked() -> None:
    key = "pd_test_0123456789"
    # `&#112` then `5` reads as `&#1125` in HTML: not the key, left as it is.
    shown = "&#1125d_test_0123456789"
    assert redact(shown, key) == shown


def test_text_that_only_looks_like_the_key_is_left_alone() -> None:
    other = "".join(f"&#{ord(c)};" for c in "pd_test_other_key_0000")
    text = f"see {other} and %70%64 and pd_test_ and \\u0070"
    assert redact(text, "pd_test_real_key_9999") == text


@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8),
    st.lists(st.integers(0, 8), min_size=1),
    st.text(max_size=8),
)
def test_a_key_in_any_mix_of_forms_is_masked(key: str, choices: list[int], around: str) -> None:
    def form(i: int, c: str) -> str:
        return (
            c,
            percent(c),
            percent(c, upper=False),
            decimal(c),
            f"&#X0{ord(c):X};",
            f"\\u{ord(c):04X}",
            f"&amp;#{ord(c)};",
            "%25" + percent(c)[1:],
            html.escape(c),
        )[choices[i % len(choices)]]

    shown = "".join(form(i, c) for i, c in enumerate(key))
    masked = redact(f"{around}{shown}{around}", key)
    assert shown not in masked and not leaks(masked.replace(around, "\0"), key)


def test_masking_a_big_answer_compiles_once_and_stays_linear() -> None:
    from pixeldojo_cli.core.redact import _pattern

    body = ("x &#; %4 \\u00 " * 50_000) + FORMS["all-mixed"](KEY)
    assert redact(body, KEY).endswith(MASKED)
    before = _pattern.cache_info().hits
    redact(body, KEY)
    assert _pattern.cache_info().hits == before + 1


# --- against the emulator -----------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS, ids=list(FORMS))
def test_an_error_message_echoing_the_key_in_any_form_is_masked(
    make_emulator: Callable[..., Emulator], form: str
) -> None:
    emulator = make_emulator(latency=0.0)
    cli = make_invoker(emulator)
    for args in (("jobs", "list"), ("jobs", "list", "--json"), ("-v", "jobs", "list")):
        emulator.add_fault("status", status=400, path="/jobs", message=f"x {FORMS[form](TEST_KEY)}")
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert not leaks(result.output, TEST_KEY), result.output
        assert "****" + TEST_KEY[-4:] in result.output


def test_a_job_echoing_the_key_in_every_form_leaves_it_nowhere(
    make_emulator: Callable[..., Emulator], tmp_path: Path, isolated_env: Path
) -> None:
    emulator = make_emulator(echo_key=True)
    cli = make_invoker(emulator)
    run = cli("run", "flux-dev", "x", "--json", "-o", str(tmp_path / "out"), *FAST)
    assert run.exit_code == 0, run.output
    job = json.loads(run.stdout)
    assert set(job["echoes"]) >= {"percentUpper", "htmlDecimal", "htmlMixed", "jsonEscapes"}
    outputs = [
        run,
        cli("jobs", "show", job["jobId"], "--json"),
        cli("jobs", "list", "--json"),
        cli("api", "GET", f"/jobs/{job['jobId']}"),
        cli("api", "GET", "/jobs"),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert not leaks(result.output, TEST_KEY), result.output
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    stored += [p for p in (isolated_env / "xdg_data_home").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in stored)
    for path in stored:
        assert not leaks(path.read_bytes().decode("latin-1"), TEST_KEY), path
