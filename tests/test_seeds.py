"""A seed every time: a job whose model takes a `seed` and was given none gets a
random one, within the schema's bounds, sent, recorded (ledger and sidecar)
and printed with the job id; `--dry-run` shows it; `--no-auto-seed`, the
`auto_seed` setting and PIXELDOJO_AUTO_SEED turn it off. A `--batch` line's
seed is derived from its key, so a rerun of the batch submits nothing again."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.api.results import Cost, Model
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.preparing import JobAsk, prepare
from pixeldojo_cli.inputs.seeds import derived_seed, random_seed, seed_range
from pixeldojo_cli.store.ledger import Ledger

from conftest import FAST, Invoke

TOP = 2**31 - 1


def posts(emulator: Emulator) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]


def schema_with(seed: dict[str, Any] | None) -> dict[str, Any]:
    props: dict[str, Any] = {"prompt": {"type": "string"}}
    if seed is not None:
        props["seed"] = seed
    return {"type": "object", "properties": props, "required": ["prompt"]}


def prepared(schema: dict[str, Any], **ask: Any) -> dict[str, Any]:
    model = Model("m", "m", "", "image", Cost(1.0), (), schema, {})
    return prepare(model, schema, JobAsk(prompt="x", **ask), Path(".")).inputs


def test_a_job_given_no_seed_is_sent_one_recorded_and_printed_with_its_id(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    result = cli("run", "flux-dev", "a fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    [body] = posts(emulator)
    seed = body["seed"]
    assert isinstance(seed, int) and 0 <= seed <= TOP
    job_id = next(iter(emulator.jobs))
    assert f"Submitted {job_id} (flux-dev): seed {seed}, 1 credit" in result.stderr
    sidecar = json.loads((tmp_path / "out" / f"{job_id}.json").read_text())
    assert sidecar["inputs"] == {"prompt": "a fox", "seed": seed}
    with Ledger() as ledger:
        record = ledger.get(emulator.base_url, job_id)
        assert record is not None and record.inputs == {"prompt": "a fox", "seed": seed}


def test_two_jobs_get_two_seeds(cli: Invoke, emulator: Emulator) -> None:
    for _ in range(2):
        assert cli("run", "flux-dev", "a fox", "--no-wait").exit_code == 0
    first, second = (body["seed"] for body in posts(emulator))
    assert first != second  # one in two billion


def test_a_seed_given_is_the_one_sent(cli: Invoke, emulator: Emulator) -> None:
    assert cli("run", "flux-dev", "x", "--seed", "7", "--no-wait").exit_code == 0
    assert cli("run", "flux-dev", "x", "-p", "seed=9", "--no-wait").exit_code == 0
    assert [body["seed"] for body in posts(emulator)] == [7, 9]


def test_dry_run_shows_the_seed_it_would_send(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "--dry-run")
    assert result.exit_code == 0, result.stderr
    seed = json.loads(result.stdout)["seed"]
    assert f"Seed {seed}. Estimated cost: 1 credit." in result.stderr
    as_json = cli("run", "flux-dev", "x", "--dry-run", "--json")
    assert isinstance(json.loads(as_json.stdout)["body"]["seed"], int)
    assert posts(emulator) == []


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--no-auto-seed"], {}),
        ([], {"PIXELDOJO_AUTO_SEED": "off"}),
        ([], {"PIXELDOJO_AUTO_SEED": "no"}),
    ],
    ids=["flag", "env-off", "env-no"],
)
def test_no_auto_seed_leaves_the_seed_to_the_api(
    cli: Invoke, emulator: Emulator, args: list[str], env: dict[str, str]
) -> None:
    result = cli("run", "flux-dev", "x", "--no-wait", *args, env=env)
    assert result.exit_code == 0, result.stderr
    assert posts(emulator) == [{"prompt": "x"}]
    assert "seed" not in result.stderr


def test_the_auto_seed_setting_turns_it_off(cli: Invoke, emulator: Emulator) -> None:
    assert cli("config", "set", "auto_seed", "false").exit_code == 0
    assert cli("run", "flux-dev", "x", "--no-wait").exit_code == 0
    assert posts(emulator) == [{"prompt": "x"}]


def test_a_bad_auto_seed_value_is_one_line_and_exit_2(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "--no-wait", env={"PIXELDOJO_AUTO_SEED": "maybe"})
    assert result.exit_code == 2
    assert "PIXELDOJO_AUTO_SEED" in result.stderr and "Traceback" not in result.output
    assert posts(emulator) == []


def test_the_seed_stays_within_the_schemas_bounds() -> None:
    assert seed_range(schema_with({"type": "integer", "minimum": 10, "maximum": 12})) == (10, 12)
    assert {random_seed((10, 12)) for _ in range(200)} == {10, 11, 12}
    assert seed_range(schema_with({"type": "integer"})) == (0, TOP)
    assert seed_range(schema_with({"type": "integer", "maximum": -5})) == (-5 - TOP, -5)
    assert seed_range(schema_with({"type": "integer", "minimum": 2**40})) == (2**40, 2**40 + TOP)
    assert seed_range(schema_with({"type": "integer", "minimum": 0.5, "maximum": 0.9})) is None
    assert seed_range(schema_with({"type": "string"})) is None
    assert seed_range(schema_with(None)) is None
    seeds = {prepared(schema_with({"type": "integer", "minimum": 3, "maximum": 4}))["seed"]}
    assert seeds <= {3, 4}


def test_a_model_that_takes_no_seed_gets_none() -> None:
    assert prepared(schema_with(None)) == {"prompt": "x"}
    assert prepared(schema_with({"type": "integer"}), auto_seed=False) == {"prompt": "x"}


def test_a_seed_the_schema_would_refuse_is_left_to_the_api() -> None:
    # No whole number from 1 to 100 is a multiple of 2**40: never send one that is refused.
    refusing = {"type": "integer", "minimum": 1, "maximum": 100, "multipleOf": 2**40}
    assert prepared(schema_with(refusing)) == {"prompt": "x"}


def test_batch_lines_get_seeds_derived_from_their_keys_and_a_rerun_submits_nothing(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    Path("b.txt").write_text("a fox\na fox\n" + json.dumps({"prompt": "owl", "seed": 5}) + "\n")
    run = ("run", "flux-dev", "--batch", "b.txt", "-o", "out", *FAST)
    first = cli(*run)
    assert first.exit_code == 0, first.output
    seeds = [body["seed"] for body in posts(emulator)]
    assert seeds[2] == 5  # a line's own seed wins
    assert seeds[0] != seeds[1]  # two identical lines: two jobs, two pictures
    again = cli(*run)
    assert again.exit_code == 0, again.output
    assert len(posts(emulator)) == 3  # every line found done: nothing paid twice
    plan = cli("run", "flux-dev", "--batch", "b.txt", "--dry-run")
    assert [json.loads(line)["body"]["seed"] for line in plan.stdout.splitlines()] == seeds


def test_a_batch_lines_seed_is_a_function_of_its_key_alone() -> None:
    assert derived_seed((0, TOP), "k1") == derived_seed((0, TOP), "k1")
    assert derived_seed((0, TOP), "k1") != derived_seed((0, TOP), "k2")
    assert {derived_seed((3, 4), str(n)) for n in range(50)} == {3, 4}


def test_batch_lines_with_no_auto_seed_send_none(cli: Invoke, emulator: Emulator) -> None:
    Path("b.txt").write_text("a fox\n")
    result = cli("run", "flux-dev", "--batch", "b.txt", "--no-wait", "--no-auto-seed")
    assert result.exit_code == 0, result.output
    assert posts(emulator) == [{"prompt": "a fox"}]
    assert not re.search(r"seed \d", result.stderr)
