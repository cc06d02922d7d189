"""`config set` rewrites config.toml: it says so in its help, and at the top of the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from conftest import Invoke


def test_config_set_rewrites_the_file_under_a_header_that_says_so(
    cli: Invoke, isolated_env: Path
) -> None:
    path = isolated_env / "xdg_config_home" / "pixeldojo" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("# my note\n[defaults]\nrate_limit = 30.0 # slow account\n")
    assert cli("config", "set", "output_dir", "renders").exit_code == 0
    text = path.read_text()
    assert text.startswith("# pixeldojo settings.")
    assert "rewrite\n# this whole file: comments and formatting added here are not kept." in text
    assert "my note" not in text  # as the header and the help say
    assert tomllib.loads(text) == {"defaults": {"rate_limit": 30.0, "output_dir": "renders"}}


def test_config_help_says_the_file_is_rewritten(cli: Invoke) -> None:
    for command in ("set", "unset"):
        text = " ".join(cli("config", command, "--help").stdout.split())
        assert "rewritten" in text and "comments in it are not kept" in text
        assert "Nothing else in the file changes" not in text
