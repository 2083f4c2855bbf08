"""The command line as a new user meets it: -h everywhere, --version, flags shown as flags, sizes
named where they are asked for, and footage passed one way."""

from __future__ import annotations

import re

import pytest
import typer.main

from superslomo import __version__
from superslomo.cli import app, main

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "-h"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_every_command_has_short_help_and_no_bool_placeholders(capsys):
    assert len(COMMANDS) >= 10
    for command in [None, *COMMANDS]:
        text = help_text(capsys, *([command] if command else []))
        assert text.startswith("Usage: slomo"), command
        # A flag takes no value: showing one (`--slowmo <bool>`) makes users type `--slowmo true`.
        assert "<bool>" not in text, command


def test_version_prints_the_package_version(capsys):
    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as exit_info:
            main([flag])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.strip() == f"slomo (superslomo-trt) {__version__}"


def test_sizes_are_named_where_they_are_asked_for(capsys):
    root = help_text(capsys)
    assert "WIDTHxHEIGHT" in root and "NxHxW" in root
    assert re.search(r"--opt NxHxW", help_text(capsys, "build-engine"))
    assert re.search(r"--size WIDTHxHEIGHT", help_text(capsys, "calibrate"))
    for command in ("parity", "bench"):
        assert re.search(r"--sizes WxH", help_text(capsys, command)), command


def test_footage_is_passed_with_data_everywhere_it_is_sampled(capsys):
    for command in ("calibrate", "eval", "parity", "train", "bench"):
        text = help_text(capsys, command)
        assert "--data" in text, command
        for other in ("--frames", "--clip", "--calib-data"):
            assert other not in text, (command, other)
