"""The command line's help and `fedge config show`."""

from __future__ import annotations

import argparse
import tomllib

import pytest

from fedge.cli.main import build_parser, main
from fedge.config import FedgeConfig, known_keys


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) below ``parser``, itself included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _option_blocks(help_text: str) -> dict[str, str]:
    """Each option's entry in a help text: from its line to the next option's."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            blocks[current] = ""
        elif not line.startswith("   "):
            current = None
        if current:
            blocks[current] += " " + line.strip()
    return blocks


def test_every_option_of_every_command_states_its_default():
    commands = dict(_commands(build_parser()))
    assert {("simulate",), ("report",), ("compare",), ("config", "show")} <= set(commands)
    for path, parser in commands.items():
        blocks = _option_blocks(parser.format_help())
        options = [a.option_strings[0] for a in parser._actions if a.option_strings]
        assert set(options) == set(blocks), path
        for option, text in blocks.items():
            if option in ("-h", "--version"):
                continue
            assert "(default" in text, f"fedge {' '.join(path)} {option}: {text}"


def test_simulate_help_lists_every_config_key_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    assert "--quiet" in text and "--log-format {text,json}" in text
    assert "(default: text)" in text
    for key in known_keys():
        assert f"{key}=" in text, key
    assert "num-rounds=10" in text and "tensorboard=false" in text


def test_config_show_is_toml_with_where_each_value_came_from(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text('strategy = "fedprox"\nnum-rounds = 4\n')
    assert main(["config", "show", "--config", str(job), "--set", "num-rounds=7"]) == 0
    out = capsys.readouterr().out
    values = tomllib.loads(out)  # usable as --config FILE.toml
    assert FedgeConfig.from_mapping(values).num_rounds == 7
    lines = {line.split(" =")[0]: line for line in out.splitlines() if " = " in line}
    assert lines["num-rounds"].endswith("# --set")
    assert lines["strategy"].endswith(f"# file {job}")
    assert lines["lr"].endswith("# default")
    assert out.startswith("# resolved configuration: 2 of")
