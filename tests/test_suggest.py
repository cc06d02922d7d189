"""Did-you-mean that is actually close: model ids, enum values, numbers."""

from __future__ import annotations

import json

import pytest

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.suggest import close_matches, did_you_mean
from pixeldojo_cli.inputs.schema import validate_inputs

from conftest import Invoke

RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]


def test_an_aspect_ratio_is_matched_by_its_shape_not_its_characters() -> None:
    assert close_matches("16:10", RATIOS) == ["3:2", "16:9"]  # never 1:1
    assert close_matches("1920x1080", RATIOS, n=1) == ["16:9"]
    assert close_matches("9:20", RATIOS, n=1) == ["9:16"]


def test_numbers_are_matched_by_size_and_text_by_prefix_then_likeness() -> None:
    assert close_matches("7", ["5", "10", "15"], n=1) == ["5"]
    assert close_matches("flux-1.1", ["flux-dev", "flux-1.1-pro", "flux-1.1-pro-ultra"]) == [
        "flux-1.1-pro",
        "flux-1.1-pro-ultra",
    ]
    assert close_matches("PNG", ["png", "jpg", "webp"]) == ["png"]
    assert close_matches("zzzz", ["png", "jpg", "webp"]) == []
    assert did_you_mean(["a", "b", "c"]) == "Did you mean 'a', 'b' or 'c'?"


def test_an_enum_value_not_allowed_suggests_the_close_ones() -> None:
    schema = {"properties": {"aspect_ratio": {"type": "string", "enum": RATIOS}}}
    with pytest.raises(UsageError) as caught:
        validate_inputs(schema, {"aspect_ratio": "16:10"})
    assert "Did you mean '3:2' or '16:9'?" in caught.value.message


def test_a_mistyped_model_id_suggests_the_close_ones(cli: Invoke) -> None:
    result = cli("run", "flux-1.1", "x")
    assert result.exit_code == 6
    assert "Did you mean 'flux-1.1-pro' or 'flux-1.1-pro-ultra'?" in result.stderr
    shown = cli("models", "show", "fluxdev", "--json")
    assert shown.exit_code == 6
    assert "'flux-dev'" in json.loads(shown.stdout)["error"]["message"]
    assert "Did you mean" not in cli("run", "qqqqqqqq", "x").stderr  # nothing close
