"""`pixeldojo models`: list, filter, show, schema; no key needed."""

from __future__ import annotations

import json

from pixeldojo_cli.emulator import Emulator

from conftest import Invoke, make_invoker


def test_models_lists_all_36_models_tab_separated_when_piped(cli: Invoke) -> None:
    result = cli("models")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 36
    assert ["flux-dev", "Flux Dev", "image", "1", "lora"] in rows


def test_models_list_is_the_same_as_models(cli: Invoke) -> None:
    assert cli("models", "list").stdout == cli("models").stdout


def test_models_filter_by_type(cli: Invoke) -> None:
    result = cli("models", "--type", "video", "--json")
    ids = {m["id"] for m in json.loads(result.stdout)}
    assert ids == {"wan-2.6-flash", "wan-2.2-plus", "seedance-1.5", "xai-video"}


def test_models_filter_by_feature(cli: Invoke) -> None:
    result = cli("models", "list", "--feature", "audio", "--json")
    assert {m["id"] for m in json.loads(result.stdout)} == {"wan-2.6-flash", "seedance-1.5"}


def test_models_json_is_a_list_with_costs_and_features(cli: Invoke) -> None:
    models = json.loads(cli("models", "--json").stdout)
    flux2 = next(m for m in models if m["id"] == "flux-2-pro")
    assert flux2["creditCost"]["byResolution"]["4 MP"] == 2
    assert flux2["features"] == ["lora", "editing"]


def test_models_table_shows_per_second_and_resolution_prices(cli: Invoke) -> None:
    rows = {line.split("\t")[0]: line.split("\t") for line in cli("models").stdout.splitlines()}
    assert rows["seedance-1.5"][3] == "1.5/s"
    assert rows["wan-2.6-flash"][3] == "1/s (720p=1, 1080p=1.5)"


def test_models_work_without_a_key(emulator: Emulator) -> None:
    result = make_invoker(emulator, key=None)("models", "show", "flux-dev")
    assert result.exit_code == 0, result.stderr
    assert all(r.authorization is None for r in emulator.requests)


def test_models_show_lists_parameters(cli: Invoke) -> None:
    result = cli("models", "show", "flux-dev")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Flux Dev (flux-dev)")
    assert "prompt *\tstring" in result.stdout
    assert 'aspect_ratio\tstring\t"1:1"\t1:1, 16:9' in result.stdout
    assert "num_outputs\tinteger\t1\t1..4" in result.stdout


def test_models_show_json_includes_the_schema(cli: Invoke) -> None:
    doc = json.loads(cli("models", "show", "seedance-1.5", "--json").stdout)
    assert doc["type"] == "video"
    assert doc["requestSchema"]["properties"]["duration"]["maximum"] == 12


def test_models_schema_prints_raw_json_schema(cli: Invoke) -> None:
    schema = json.loads(cli("models", "schema", "flux-dev").stdout)
    assert schema["required"] == ["prompt"]
    assert "aspect_ratio" in schema["properties"]


def test_models_show_unknown_model_exits_6(cli: Invoke) -> None:
    result = cli("models", "show", "nope")
    assert result.exit_code == 6
    assert "not_found" in result.stderr


def test_models_schema_unknown_model_prints_json_error(cli: Invoke) -> None:
    result = cli("models", "schema", "nope")
    assert result.exit_code == 6
    assert json.loads(result.stdout)["error"]["code"] == "not_found"


def test_models_bad_type_is_a_usage_error(cli: Invoke) -> None:
    result = cli("models", "--type", "audio")
    assert result.exit_code == 2
