"""Exports say what they are doing: the cached first-use export (one line, then silence) and
`slomo export` (progress on stderr, the summary alone on stdout)."""

from __future__ import annotations

import re

import pytest

from superslomo.model import save_checkpoint

STAMPED = re.compile(r"^\[\s*\d+\.\d s\] ")


def test_cached_export_says_one_line_on_first_use_then_nothing(small_model, tmp_path, monkeypatch, capsys):
    from superslomo.apps.models import model_folder, onnx_folder_for

    monkeypatch.setenv("SLOMO_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(small_model, checkpoint)
    capsys.readouterr()

    folder = onnx_folder_for(checkpoint)  # the default `say`: stderr, as every caller gets it
    first = capsys.readouterr()
    assert first.out == ""
    lines = first.err.splitlines()
    assert len(lines) == 1, first.err
    assert lines[0].startswith("first use of tiny.safetensors: exporting it to ONNX once")
    assert str(folder) in lines[0] and (folder / "manifest.json").is_file()

    # model_folder is how calibrate, the demo and the benchmarks reach the cache.
    assert model_folder(checkpoint) == folder
    assert onnx_folder_for(checkpoint) == folder
    second = capsys.readouterr()
    assert (second.out, second.err) == ("", ""), "a cache hit must say nothing"


def test_cached_export_speaks_through_the_callback_it_is_given(small_model, tmp_path, monkeypatch, capsys):
    from superslomo.apps.models import onnx_folder_for
    from superslomo.export import onnx_export

    def no_export(*args, **kwargs):  # only the words are under test here, not a second slow export
        raise RuntimeError("export stubbed out")

    monkeypatch.setenv("SLOMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_export, "export_model", no_export)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(small_model, checkpoint)
    capsys.readouterr()
    heard: list[str] = []
    with pytest.raises(RuntimeError, match="stubbed"):
        onnx_folder_for(checkpoint, say=heard.append)
    assert len(heard) == 1 and heard[0].startswith("first use of tiny.safetensors"), heard
    with pytest.raises(RuntimeError, match="stubbed"):
        onnx_folder_for(checkpoint, say=None)
    assert capsys.readouterr().err == "", "a callback (or None) replaces stderr"
    assert list((tmp_path / "cache").iterdir()) == [], "a failed export leaves nothing in the cache"


def test_export_command_prints_progress_on_stderr_and_the_summary_on_stdout(small_model, tmp_path, capsys):
    from superslomo.cli import main

    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(small_model, checkpoint)
    out = tmp_path / "graphs"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(checkpoint), "-o", str(out), "--precision", "fp16"])
    captured = capsys.readouterr()
    assert exit_.value.code in (0, None), captured.err

    assert captured.out.splitlines() == [captured.out.strip()] and captured.out.startswith(
        f"wrote {out}/flow.onnx"
    )
    progress = captured.err.splitlines()
    assert all(STAMPED.match(line) for line in progress), progress
    said = [STAMPED.sub("", line) for line in progress]
    expected = [
        f"loaded {checkpoint}",
        "converting the U-Nets to fp16",
        "exporting flow.onnx",
        "checking flow.onnx",
        "exporting interp.onnx",
        "checking interp.onnx",
    ]
    assert len(said) == len(expected), said
    for line, start in zip(said, expected, strict=False):
        assert line.startswith(start), (line, start)
    seconds = [float(line[1 : line.index(" s]")]) for line in progress]
    assert seconds == sorted(seconds) and seconds[-1] > 0.0  # elapsed time, counting up
