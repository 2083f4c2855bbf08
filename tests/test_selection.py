"""Backend and precision chosen by measurement (`--precision auto`): the eligibility rules, the
interleaved timing probe and its per-machine cache, the words of the `backend:` line, the shipped
accuracy report, and `slomo interpolate --precision` end to end on a width-4 model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from superslomo.errors import SloMoError
from superslomo.runtime import selection
from superslomo.runtime.options import OnnxRuntimeOptions, OpenVinoOptions
from superslomo.runtime.selection import Candidate, Report

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
BOTH = {"onnxruntime": (True, ""), "openvino": (True, "")}
FOLDERS = {"fp32": Path("m-fp32"), "int8": Path("m-int8")}


def keys(cands):
    return [c.key for c in cands]


# -- who may run ---------------------------------------------------------------------------------
def test_fp32_always_eligible_others_only_with_a_measured_drop_within_budget():
    report = Report(drops={"onnxruntime/int8": 0.2, "openvino/bf16": 0.5})
    eligible, why = selection.candidates(FOLDERS, BOTH, report, bf16=True)
    assert keys(eligible) == ["onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32"]
    assert why == {"openvino/bf16": "-0.50 dB", "openvino/int8": "accuracy not measured"}
    # a tighter budget drops INT8; fp32 stays whatever the budget
    eligible, why = selection.candidates(FOLDERS, BOTH, report, budget_db=0.1, bf16=True)
    assert keys(eligible) == ["onnxruntime/fp32", "openvino/fp32"] and why["onnxruntime/int8"] == "-0.20 dB"


def test_never_auto_wins_over_any_budget_but_not_over_a_pin():
    report = Report(drops={"openvino/int8": 0.01}, never_auto={"openvino/int8": "cause unknown"})
    eligible, why = selection.candidates(FOLDERS, BOTH, report, budget_db=10.0)
    assert "openvino/int8" not in keys(eligible) and why["openvino/int8"] == "cause unknown"
    pinned, _ = selection.candidates(FOLDERS, BOTH, report, runtime="openvino", precision="int8")
    assert keys(pinned) == ["openvino/int8"]


def test_bf16_needs_a_cpu_that_computes_in_bf16_even_when_pinned():
    report = Report(drops={"openvino/bf16": 0.0})
    eligible, why = selection.candidates(FOLDERS, BOTH, report, precision="bf16", bf16=False)
    assert eligible == [] and why == {"openvino/bf16": "no bf16 on this CPU"}
    eligible, _ = selection.candidates(FOLDERS, BOTH, report, precision="bf16", bf16=True)
    assert keys(eligible) == ["openvino/bf16"] and eligible[0].options() == OpenVinoOptions(precision="bf16")
    # INT8 on OpenVINO asks for f32 around its quantized convolutions, never the bf16 default
    assert Candidate("openvino", "int8", Path("x")).options() == OpenVinoOptions(precision="f32")
    assert Candidate("onnxruntime", "int8", Path("x")).options(threads=2) == OnnxRuntimeOptions(threads=2)


def test_missing_runtime_and_folder_are_reasons():
    no_ov = {"onnxruntime": (True, ""), "openvino": (False, "OpenVINO is not installed")}
    eligible, why = selection.candidates({"fp32": Path("a")}, no_ov, Report(drops={"onnxruntime/int8": 0.0}))
    assert keys(eligible) == ["onnxruntime/fp32"]
    assert why["onnxruntime/int8"] == "no int8 folder" and why["openvino/fp32"] == "OpenVINO is not installed"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "int4"}, "unknown precision 'int4'"),
        ({"runtime": "tensorrt"}, "the CPU backends are onnxruntime, openvino"),
        ({"budget_db": -1.0}, "budget must be >= 0"),
    ],
)
def test_bad_choices_are_one_line_errors(kwargs, message):
    with pytest.raises(SloMoError, match=message) as error:
        selection.candidates(FOLDERS, BOTH, Report(), **kwargs)
    assert "\n" not in str(error.value)


def test_report_load_merge_and_damage(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "candidates": {
                    "onnxruntime/int8": {"drop_db": 0.2},
                    "openvino/bf16": {"drop_db": None, "why": "not measured"},
                    "openvino/int8": {"drop_db": 2.1, "auto": False, "why": "cause unknown"},
                }
            }
        )
    )
    report = Report.load(path)
    assert report.drops == {"onnxruntime/int8": 0.2, "openvino/int8": 2.1}
    assert report.never_auto == {"openvino/int8": "cause unknown"}
    # two measurements of one precision: the worse one counts
    merged = report.merge(Report(drops={"onnxruntime/int8": 2.0, "openvino/bf16": 0.1}))
    assert merged.drops["onnxruntime/int8"] == 2.0 and merged.drops["openvino/bf16"] == 0.1
    path.write_text("{not json")
    with pytest.raises(SloMoError, match="unreadable accuracy report"):
        Report.load(path)


# -- the probe ------------------------------------------------------------------------------------
class FakeInterp:
    """An Interpolator whose pair costs `ms` on a shared fake clock."""

    def __init__(self, name, ms, clock, log):
        self.name, self.ms, self.clock, self.log = name, ms, clock, log
        self.closed = False

    def interpolate(self, frame0, frame1, times):
        assert frame0.shape == frame1.shape and list(times) == [0.5]
        self.log.append(self.name)
        self.clock[0] += self.ms / 1000
        return [frame0]

    def close(self):
        self.closed = True


def test_probe_interleaves_rotates_keeps_the_minimum_and_prunes_clear_losers():
    clock, log = [0.0], []
    opened = {n: FakeInterp(n, ms, clock, log) for n, ms in (("a", 100), ("b", 90), ("c", 300))}
    result = selection.probe(opened, (64, 32), rounds=2, clock=lambda: clock[0])
    assert result == pytest.approx({"a": 100.0, "b": 90.0, "c": 300.0})
    # untimed round a b c, timed round b c a; c (3.3x the best) is dropped before the last round
    assert log == ["a", "b", "c", "b", "c", "a", "a", "b"]


def test_select_picks_the_fastest_caches_per_machine_and_closes_the_rest(tmp_path):
    clock, log, opened = [0.0], [], []
    speeds = {"onnxruntime/fp32": 200, "onnxruntime/int8": 120, "openvino/fp32": 150}

    def open_interp(candidate):
        interp = FakeInterp(candidate.key, speeds[candidate.key], clock, log)
        opened.append(interp)
        return interp

    report = Report(drops={"onnxruntime/int8": 0.19}, never_auto={"openvino/int8": "cause unknown"})
    args = dict(runtimes=BOTH, bf16=False, open_interp=open_interp, cache_dir=tmp_path, say=None)
    original = selection.probe
    selection.probe = lambda o, size: original(o, size, clock=lambda: clock[0])
    try:
        choice = selection.select(FOLDERS, report, (1280, 720), **args)
        assert choice.candidate.key == "onnxruntime/int8" and not choice.cached
        assert choice.interpolator.name == "onnxruntime/int8" and not choice.interpolator.closed
        assert all(i.closed for i in opened if i is not choice.interpolator)
        assert choice.label == (
            "onnxruntime int8 (CPU; fastest within 0.3 dB at 1280x720: "
            "1.67x onnxruntime fp32 and 1.25x openvino fp32; -0.19 dB)"
        )
        assert "," not in choice.label  # the video summary keeps what precedes the first comma
        assert "openvino bf16: no bf16 on this CPU" in choice.details
        assert "openvino int8: cause unknown" in choice.details
        assert len(list(tmp_path.glob("probe-*.json"))) == 1

        # The same job again: speeds come from the cache, only the winner is opened.
        opened.clear()
        again = selection.select(FOLDERS, report, (1280, 720), **args)
        assert again.cached and again.candidate.key == "onnxruntime/int8" and len(opened) == 1
        assert "speeds cached" in again.details
        # Another padded size is another measurement (1280x700 pads to 1280x704, not 736).
        opened.clear()
        other = selection.select(FOLDERS, report, (1280, 700), **args)
        assert not other.cached and len(opened) == 3
        assert len(list(tmp_path.glob("probe-*.json"))) == 2
        # A budget that excludes INT8 picks the fastest fp32 from the same cached speeds.
        tight = selection.select(FOLDERS, report, (1280, 720), budget_db=0.1, **args)
        assert tight.candidate.key == "openvino/fp32" and tight.cached
    finally:
        selection.probe = original


def test_select_with_one_candidate_does_not_probe_and_nothing_eligible_says_why(tmp_path):
    opened = []

    def open_interp(candidate):
        opened.append(candidate)
        return object()

    choice = selection.select(
        {"fp32": Path("f")},
        Report(),
        (64, 64),
        runtime="onnxruntime",
        precision="fp32",
        runtimes=BOTH,
        bf16=False,
        open_interp=open_interp,
        cache_dir=tmp_path,
    )
    assert choice.timings_ms == {} and len(opened) == 1 and choice.label == "onnxruntime fp32 (CPU; +0.00 dB)"
    assert not list(tmp_path.iterdir())
    with pytest.raises(SloMoError, match=r"nothing can run --precision bf16 here \(openvino bf16: no bf16"):
        selection.select({"fp32": Path("f")}, Report(), (64, 64), precision="bf16", runtimes=BOTH, bf16=False)


def test_cache_key_follows_what_changes_the_answer(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("{}")
    cands = {"fp32": tmp_path}
    base = selection.probe_facts(cands, (1280, 720), None)
    assert base["padded"] == [1280, 736] and set(base["flags"]) <= set(selection.CPU_FLAGS)
    key = selection.cache_key(base)
    assert selection.cache_key(selection.probe_facts(cands, (1280, 736), None)) == key  # same padding
    assert selection.cache_key(selection.probe_facts(cands, (1280, 720), 1)) != key  # threads
    (tmp_path / "manifest.json").write_text('{"re-exported": true}')
    assert selection.cache_key(selection.probe_facts(cands, (1280, 720), None)) != key  # the model
    monkeypatch.setattr(
        selection, "cpu_facts", lambda: {"cpu": "AMD EPYC", "cores": 2, "flags": ["avx512_bf16"]}
    )
    assert selection.cache_key(selection.probe_facts(cands, (1280, 720), None)) != key  # the CPU
    # a damaged cache entry is measured again, not trusted
    (tmp_path / f"probe-{key}.json").write_text("{")
    assert selection.read_cached(tmp_path, key) is None


# -- the shipped report ---------------------------------------------------------------------------
def test_shipped_accuracy_report_is_for_the_shipped_weights_and_never_from_an_evaluation_set():
    from superslomo.apps.weights import DEFAULT
    from superslomo.contracts.files import file_sha256
    from superslomo.eval.datasets import EVALUATION_SETS

    checkpoint = DEFAULT.checkpoint
    path = DEFAULT.precision
    data = json.loads(path.read_text())
    assert data["sha256"] == file_sha256(checkpoint)
    clips = data["frames"]["clips"]
    assert clips and not any(name in clip.lower() for clip in clips for name in EVALUATION_SETS)
    entries = data["candidates"]
    assert entries["onnxruntime/fp32"]["drop_db"] == 0.0
    assert entries["openvino/int8"]["auto"] is False  # never picked, whatever the budget
    report = Report.load(path)
    assert "openvino/int8" in report.never_auto
    for entry in entries.values():  # the gate is the worst measurement, never better than the mean
        if entry.get("drop_db_per_clip"):
            assert entry["drop_db"] >= max(entry["drop_db_per_clip"].values()) >= entry["mean_drop_db"]


def test_a_report_for_other_weights_is_ignored(tmp_path):
    from superslomo.apps.models import accuracy_report

    checkpoint = tmp_path / "m.safetensors"
    checkpoint.write_bytes(b"weights")
    report = {"sha256": "0" * 64, "candidates": {"openvino/bf16": {"drop_db": 0.0}}}
    (tmp_path / "m.precision.json").write_text(json.dumps(report))
    folder = tmp_path / "onnx"
    folder.mkdir()
    assert accuracy_report(folder, checkpoint).drops == {}
    from superslomo.contracts.files import file_sha256

    report["sha256"] = file_sha256(checkpoint)
    (tmp_path / "m.precision.json").write_text(json.dumps(report))
    assert accuracy_report(folder, checkpoint).drops == {"openvino/bf16": 0.0}


def test_sibling_folders(tmp_path):
    from superslomo.apps.models import sibling

    for name in ("onnx", "onnx-int8", "abc-fp32", "abc-int8"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    assert sibling(tmp_path / "onnx", "int8") == tmp_path / "onnx-int8"
    assert sibling(tmp_path / "abc-fp32", "int8") == tmp_path / "abc-int8"
    assert sibling(tmp_path / "onnx", "fp16") is None


# -- end to end ------------------------------------------------------------------------------------
def test_open_model_auto_measures_installed_fp32_runtimes_and_pins_work(onnx_model, tmp_path, monkeypatch):
    import numpy as np

    from superslomo.apps.models import open_model

    monkeypatch.setenv("SLOMO_CACHE_DIR", str(tmp_path / "cache"))
    said: list[str] = []
    interp, label = open_model(onnx_model, "auto", "auto", size=(64, 64), say=said.append)
    with interp:
        frame = np.zeros((64, 64, 3), np.uint8)
        assert interp.interpolate(frame, frame, [0.5])[0].shape == (64, 64, 3)
    assert label.endswith(", picked by auto") and "+0.00 dB" in label
    runtime = label.split()[0]
    if HAS_OPENVINO:
        assert "fastest within 0.3 dB at 64x64" in label and runtime in ("onnxruntime", "openvino")
        assert len(list((tmp_path / "cache" / "selection").glob("probe-*.json"))) == 1
    else:
        assert runtime == "onnxruntime"
    assert "onnxruntime int8: no int8 folder" in said[-1]
    pinned, label = open_model(onnx_model, "onnxruntime", "fp32", size=(64, 64), say=None)
    pinned.close()
    assert label == "onnxruntime fp32 (CPU; +0.00 dB)"
    with pytest.raises(SloMoError, match="--precision int8 needs an INT8 folder beside") as error:
        open_model(onnx_model, "auto", "int8", size=(64, 64), say=None)
    assert "\n" not in str(error.value) and "slomo quantize" in str(error.value)


def test_cli_bad_precision_exits_2_with_one_line(onnx_model, tmp_path, capsys):
    from superslomo.cli import main
    from tests.videoclips import make_clip

    clip = make_clip(tmp_path / "in.mp4", frames=3, size=(64, 48))
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "interpolate",
                str(clip),
                "-o",
                str(tmp_path / "o.mp4"),
                "-m",
                str(onnx_model),
                "--precision",
                "int4",
            ]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown precision 'int4'") and len(err) == 1


def test_cli_interpolate_default_path_says_what_auto_picked(onnx_model, tmp_path, capsys, monkeypatch):
    from superslomo.cli import main
    from tests.videoclips import make_clip

    monkeypatch.setenv("SLOMO_CACHE_DIR", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "in.mp4", frames=3, size=(64, 48))
    with pytest.raises(SystemExit) as exit_:
        main(["interpolate", str(clip), "-o", str(tmp_path / "o.mp4"), "-m", str(onnx_model)])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    line = next(li for li in captured.err.splitlines() if li.startswith("backend: "))
    assert line.endswith(", picked by auto") and "fp32 (CPU; " in line
    assert (tmp_path / "o.mp4").is_file()


def test_a_pinned_onnxruntime_never_imports_openvino(tmp_path, monkeypatch):
    # OpenVINO's import starts telemetry that forks from a thread: a GStreamer element pinned to
    # onnxruntime crashed in it. Where OpenVINO cannot be chosen it is not even asked about.
    from superslomo.runtime import loader

    def refuse():
        raise AssertionError("OpenVINO was asked about")

    monkeypatch.setattr(loader, "openvino_usable", refuse)
    monkeypatch.setattr(selection, "openvino_capabilities", refuse)
    choice = selection.select(
        {"fp32": Path("f")},
        Report(),
        (64, 64),
        runtime="onnxruntime",
        precision="fp32",
        open_interp=lambda candidate: object(),
        cache_dir=tmp_path,
    )
    assert choice.candidate.key == "onnxruntime/fp32"
