"""`slomo interpolate` on generated clips (always run): timing, originals, sizes, audio, cuts,
variable frame rate, and the bad-input catalogue for videos."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videoclips import copy_cut, decode_all, make_clip, psnr, scene_frame, stream_facts

from superslomo.contracts.manifest import Manifest
from superslomo.errors import SloMoError
from superslomo.runtime import Backend, Interpolator
from superslomo.video.pipeline import Options, interpolate_video
from superslomo.video.timing import Timeline

ROOT = Path(__file__).resolve().parents[1]


class BlendBackend(Backend):
    """A stand-in model: zero flow, cross-fade synthesis. Fast, and a cross-fade is exactly what
    must never appear across a scene cut, so it makes morphing visible to the tests."""

    name = "blend"

    def __init__(self) -> None:
        super().__init__(
            None,
            Manifest(kind="onnx", precision="fp32", warp="gridsample", io="float32", opset=17, graphs={}),
        )
        self.calls = {"flow": 0, "interp": 0}

    def infer(self, graph, inputs):
        self.calls[graph] += 1
        f0, f1 = inputs["frame0"], inputs["frame1"]
        if graph == "flow":
            zeros = np.zeros((f0.shape[0], 2, *f0.shape[2:]), np.float32)
            return {"flow01": zeros, "flow10": zeros}
        t = inputs["t"].reshape(-1, 1, 1, 1)
        return {"frame_t": (1 - t) * f0 + t * f1}


def run(src, dst, **options):
    backend = BlendBackend()
    summary = interpolate_video(
        src, dst, Interpolator(backend), "blend", Options(**options), progress=False, say=lambda s: None
    )
    return summary, backend


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "shapes.mp4", frames=12, size=(90, 50), rate=24)


@pytest.fixture(scope="module")
def clip_audio(tmp_path_factory):
    return make_clip(
        tmp_path_factory.mktemp("clips") / "shapes_aac.mp4", frames=12, size=(64, 48), rate=25, audio="aac"
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_model):
    from superslomo.model import save_checkpoint

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(small_model, path)
    return path


# -- timing ------------------------------------------------------------------------------
def test_timeline_visits_every_output_frame_once_and_snaps_to_originals():
    line = Timeline(Fraction(48), 1)  # 2x of 24 fps, with millisecond-rounded source times
    times = [Fraction(round(i * 1000 / 24), 1000) for i in range(10)]
    slots = []
    for t0, t1 in itertools.pairwise(times):
        pair = line.slots(t0, t1)
        assert [s.t for s in pair] == [0.0, pytest.approx(0.5, abs=0.02)]
        slots += pair
    assert [s.index for s in slots] == list(range(18))


def test_timeline_fps_places_frames_by_time():
    line = Timeline(Fraction(60), 1)
    slots = line.slots(Fraction(0), Fraction(1, 24)) + line.slots(Fraction(1, 24), Fraction(2, 24))
    assert [s.index for s in slots] == [0, 1, 2, 3, 4]
    assert [round(s.t, 3) for s in slots] == [0.0, 0.4, 0.8, 0.2, 0.6]
    with pytest.raises(SloMoError):
        line.slots(Fraction(1), Fraction(1))


# -- frame counts, rates, originals ------------------------------------------------------
@pytest.mark.parametrize("factor", [2, 4])
def test_factor_counts_rate_size_and_originals(clip, tmp_path, factor):
    out = tmp_path / "out.mp4"
    summary, backend = run(clip, out, factor=factor)
    facts = stream_facts(out)
    assert facts["frames"] == 12 * factor == summary.frames_out
    assert facts["rate"] == 24 * factor
    assert (facts["width"], facts["height"]) == (90, 50)
    assert summary.new_frames == 11 * (factor - 1)
    assert backend.calls["flow"] == 11  # flow once per pair, whatever the factor
    source, result = decode_all(clip), decode_all(out)
    for i, frame in enumerate(source):
        assert psnr(result[i * factor], frame) >= 40, f"original {i} not preserved"
    # The cross-fade stand-in puts its t=1/2 frame between the two originals.
    middle = factor // 2
    blend = ((source[3].astype(np.float32) + source[4]) / 2).round()
    assert psnr(result[3 * factor + middle], blend) > psnr(result[3 * factor + middle], source[3]) + 3


def test_slowmo_keeps_rate_and_drops_audio_with_a_note(clip_audio, tmp_path):
    out = tmp_path / "slow.mp4"
    notes = []
    backend = BlendBackend()
    summary = interpolate_video(
        clip_audio,
        out,
        Interpolator(backend),
        "blend",
        Options(factor=4, slowmo=True),
        progress=False,
        say=notes.append,
    )
    facts = stream_facts(out)
    assert facts["rate"] == 25 and facts["frames"] == 48
    assert facts["video_end"] == pytest.approx(4 * 12 / 25, abs=1e-3)
    assert facts["audio"] is None and "audio dropped" in notes[0] and summary.audio.startswith("dropped")


def test_fps_places_frames_by_timestamp(clip, tmp_path):
    out = tmp_path / "60.mp4"
    summary, _ = run(clip, out, fps="60")
    facts = stream_facts(out)
    assert facts["rate"] == 60 and facts["frames"] == 30  # 0.5 s at 60 fps
    source, result = decode_all(clip), decode_all(out)
    for i in range(0, 12, 2):  # every other 24 fps frame lands exactly on the 60 fps grid
        assert psnr(result[i * 5 // 2], source[i]) >= 40
    assert summary.new_frames == 22 and summary.held_frames == 2  # two slots after the last frame hold it


def test_variable_frame_rate_becomes_constant_rate_in_sync(tmp_path):
    pts = [0, 40, 80, 150, 170, 210, 260, 300, 333, 380, 420, 460]
    src = make_clip(
        tmp_path / "vfr.mp4", frames=12, rate=25, pts=pts, time_base=Fraction(1, 1000), audio="aac"
    )
    out = tmp_path / "out.mp4"
    run(src, out, fps="50")
    facts = stream_facts(out)
    assert facts["rate"] == 50
    # Output frame j shows source time j/50: source frames at multiples of 20 ms are on that grid.
    source, result = decode_all(src), decode_all(out)
    for j, i in ((0, 0), (2, 1), (4, 2), (13, 6), (15, 7), (19, 9)):
        assert psnr(result[j], source[i]) >= 40
    assert facts["frames"] == round(0.5 * 50)  # last frame held for its 40 ms
    assert abs(facts["audio"]["seconds"] - facts["video_end"]) <= 1 / 25


def test_packet_copied_cut_keeps_nominal_rate_and_every_original(tmp_path):
    # A cut by copying packets (as ffmpeg -c copy makes): with B-frames, the container's
    # duration is a frame longer than its frames, so its average rate is 24 fps, not 25.
    import av

    whole = make_clip(tmp_path / "whole.mp4", frames=30, size=(64, 48), rate=25, preset="fast")
    src = copy_cut(whole, tmp_path / "cut.mp4", 24 / 25)
    with av.open(str(src)) as container:
        assert container.streams.video[0].average_rate != 25, "the cut no longer shows the issue"
    out = tmp_path / "out.mp4"
    summary, _ = run(src, out, factor=4)
    facts = stream_facts(out)
    assert facts["rate"] == 100 and summary.notes == []
    source, result = decode_all(src), decode_all(out)
    assert facts["frames"] == 4 * len(source) == 96
    for i, frame in enumerate(source):
        assert psnr(result[4 * i], frame) >= 40, f"original {i} was replaced"


def test_variable_rate_input_says_which_rate_it_chose(tmp_path):
    pts = [0, 40, 80, 150, 170, 210, 260, 300, 333, 380, 420, 460]
    src = make_clip(tmp_path / "vfr.mp4", frames=12, rate=25, pts=pts, time_base=Fraction(1, 1000))
    notes = []
    summary = interpolate_video(
        src,
        tmp_path / "o.mp4",
        Interpolator(BlendBackend()),
        "blend",
        Options(factor=2),
        progress=False,
        say=notes.append,
    )
    assert summary.out_rate == 48  # twice its average: 12 frames over 0.5 s
    assert len(notes) == 1 and "variable frame rate" in notes[0] and summary.notes


# -- sizes, audio -------------------------------------------------------------------------
def test_output_size_equals_input_size(tmp_path):
    src = make_clip(tmp_path / "s.mp4", frames=3, size=(854, 480))
    out = tmp_path / "out.mkv"
    run(src, out, factor=2)
    facts = stream_facts(out)
    assert (facts["width"], facts["height"]) == (854, 480) and facts["frames"] == 6
    assert psnr(decode_all(out)[2], decode_all(src)[1]) >= 40


@pytest.mark.parametrize(
    "codec,suffix,expect",
    [
        ("aac", ".mp4", "aac"),
        ("libmp3lame", ".mp4", "mp3float"),
        ("libopus", ".mp4", "opus"),
        ("libopus", ".mov", "aac"),
    ],
)
def test_audio_kept_in_sync(tmp_path, codec, suffix, expect):
    src = make_clip(
        tmp_path / f"a{suffix}" if suffix != ".mov" else tmp_path / "a.mkv",
        frames=12,
        size=(64, 48),
        rate=25,
        audio=codec,
    )
    out = tmp_path / f"out{suffix}"
    summary, _ = run(src, out, factor=2)
    facts = stream_facts(out)
    assert facts["audio"] is not None and facts["audio"]["codec"] == expect
    assert abs(facts["audio"]["seconds"] - facts["video_end"]) <= 1 / 25
    assert summary.audio == ("copy" if suffix == ".mp4" else "re-encoded opus as aac")


def test_segment_cuts_audio_with_the_video(tmp_path):
    src = make_clip(tmp_path / "long.mp4", frames=50, size=(64, 48), rate=25, audio="aac")
    out = tmp_path / "seg.mp4"
    summary, _ = run(src, out, factor=2, start=0.8, duration=0.4)
    facts = stream_facts(out)
    assert summary.frames_in == 10 and facts["frames"] == 20
    assert abs(facts["audio"]["seconds"] - 0.4) <= 1 / 25
    assert psnr(decode_all(out)[0], decode_all(src)[20]) >= 40


# -- scene cuts ---------------------------------------------------------------------------
def test_spliced_clip_cut_is_not_morphed(tmp_path):
    src = make_clip(tmp_path / "spliced.mp4", frames=10, size=(96, 64), rate=24, cut_at=5)
    out = tmp_path / "out.mp4"
    summary, backend = run(src, out, factor=4)
    assert summary.cuts == 1 and backend.calls["flow"] == 8  # no model work across the cut
    source, result = decode_all(src), decode_all(out)
    # Output frames 17..19 lie between original 4 (last of shot one) and 5 (first of shot two).
    for j, nearer in ((17, 4), (18, 5), (19, 5)):
        assert psnr(result[j], source[nearer]) >= 40, f"frame {j} is not the nearer original"
    # Within a shot the stand-in does blend, so the check above can tell the difference.
    assert psnr(result[2], source[0]) < 40


def test_scene_threshold_one_disables_cut_detection(tmp_path):
    src = make_clip(tmp_path / "spliced.mp4", frames=4, size=(64, 48), cut_at=2)
    summary, _ = run(src, tmp_path / "o.mp4", factor=2, scene_threshold=1.0)
    assert summary.cuts == 0 and summary.new_frames == 3


# -- the CLI and bad input -----------------------------------------------------------------
def cli(argv, capsys):
    from superslomo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "backend, said",
    [
        # the embedded default: a CPU runtime chosen by measurement, and where the export is (made
        # now, or by an earlier test of the same bytes: a checkpoint saves to the same sha256)
        (
            "auto",
            (
                "backend: ",
                "fp32 (CPU; ",
                "picked by auto",
                ("tiny.safetensors exported to", "tiny.safetensors ONNX cached in"),
            ),
        ),
        ("torch", ("backend: torch",)),
    ],
)
def test_cli_interpolates_with_a_checkpoint(clip, tmp_path, checkpoint, capsys, backend, said):
    out = tmp_path / "cli.mp4"
    code, stdout, stderr = cli(
        [
            "interpolate",
            str(clip),
            "-o",
            str(out),
            "--model",
            str(checkpoint),
            "--factor",
            "2",
            "--backend",
            backend,
        ],
        capsys,
    )
    alternatives = [needle if isinstance(needle, tuple) else (needle,) for needle in said]
    assert code in (0, None) and all(any(n in stderr for n in one) for one in alternatives), stderr
    assert "12 frames in, 24 out, 11 new" in stdout and "0 scene cuts" in stdout
    assert stream_facts(out)["frames"] == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.mp4"]


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    one = make_clip(tmp / "one.mp4", frames=1, size=(64, 48))
    broken = make_clip(tmp / "broken_audio.mp4", frames=6, size=(64, 48), audio="aac", broken_audio=True)
    # A transport stream cut after its tables: a video stream that never delivers a frame.
    zero = tmp / "zero.ts"
    zero.write_bytes(make_clip(tmp / "whole.ts", frames=4, size=(64, 48)).read_bytes()[:752])
    (tmp / "whole.ts").unlink()
    good = make_clip(tmp / "good.mp4", frames=4, size=(64, 48))
    out = str(tmp / "out" / "o.mp4")
    return {
        "missing file": ([str(tmp / "nope.mp4"), "-o", out], "input not found"),
        "not a video": ([str(text), "-o", out], "cannot open"),
        "empty file": ([str(empty), "-o", out], "cannot open"),
        "zero frames": ([str(zero), "-o", out], "no video frames"),
        "one frame": ([str(one), "-o", out], "only one frame"),
        "broken audio": ([str(broken), "-o", out], "audio stream cannot be decoded"),
        "output folder missing": (
            [str(good), "-o", str(tmp / "nowhere" / "o.mp4")],
            "output folder does not exist",
        ),
        "output is input": ([str(good), "-o", str(good)], "output is the input"),
        "unwritable output": ([str(good), "-o", "/proc/o.mp4"], "o.mp4"),
        "bad extension": ([str(good), "-o", str(tmp / "out" / "o.avi")], "output must end in"),
        "too large": ([str(good), "-o", out, "--max-size", "32x32"], "larger than the limit"),
        "factor 1": ([str(good), "-o", out, "--factor", "1"], "--factor must be between"),
        "bad fps": ([str(good), "-o", out, "--fps", "fast"], "not a frame rate"),
        "factor with fps": ([str(good), "-o", out, "--fps", "50", "--factor", "3"], "--slowmo"),
        "start past end": ([str(good), "-o", out, "--start", "99"], "past the end"),
        "bad codec": ([str(good), "-o", out, "--codec", "nosuchcodec"], "unknown video encoder"),
    }


def test_bad_inputs_get_one_line_errors_and_leave_nothing(tmp_path, checkpoint, capsys):
    (tmp_path / "out").mkdir()
    cases = _bad_inputs(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    for name, (args, message) in cases.items():
        code, _, err = cli(["interpolate", *args, "--model", str(checkpoint)], capsys)
        lines = [line for line in err.splitlines() if not line.startswith(("backend:", "note:"))]
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], f"{name}: {err!r}"
        assert "Traceback" not in err
        assert list((tmp_path / "out").iterdir()) == [], f"{name} left a file behind"
        assert {p.name for p in tmp_path.iterdir()} == before, f"{name} left a file behind"


def test_disk_full_leaves_no_partial_file(clip, tmp_path, monkeypatch):
    import errno

    from superslomo.video import encode

    real_write = encode.VideoWriter.write

    def failing_write(self, frame):
        if self.count == 5:
            raise encode.write_error(OSError(errno.ENOSPC, "No space left on device"), self.output)
        real_write(self, frame)

    monkeypatch.setattr(encode.VideoWriter, "write", failing_write)
    with pytest.raises(SloMoError, match="disk full"):
        run(clip, tmp_path / "out.mp4", factor=2)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_cleanly_without_partial_output(tmp_path, checkpoint):
    src = make_clip(tmp_path / "long.mp4", frames=400, size=(128, 96))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "superslomo.cli",
            "interpolate",
            str(src),
            "-o",
            str(out_dir / "o.mp4"),
            "--model",
            str(checkpoint),
            "--factor",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.time() + 60
    while not list(out_dir.iterdir()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # wait until it is writing, so the interrupt has something to clean up
    assert list(out_dir.iterdir()), "the run never started writing"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_default_model_lookup(tmp_path):
    from superslomo.apps.models import default_model

    with pytest.raises(SloMoError, match="no model given"):
        default_model(tmp_path)
    (tmp_path / "b.safetensors").write_bytes(b"x")
    assert default_model(tmp_path) == tmp_path / "b.safetensors"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "manifest.json").write_text("{}")
    assert default_model(tmp_path) == tmp_path / "demo"


def test_scene_frames_differ_between_shots():
    # Guards the spliced-clip test: the two shots must really be different pictures.
    assert psnr(scene_frame(4, 96, 64, 0), scene_frame(5, 96, 64, 1)) < 15
