"""One plan per job (issue 25): `plan_job` checks and decides everything that needs no model once
(rates, audio, output kind, the writer's pixel format, the notes), and every runner (this
machine's `run_job`, the Ray driver) runs that plan instead of planning again."""

from __future__ import annotations

import ast
import pickle
from fractions import Fraction
from pathlib import Path

import pytest
from test_video_pipeline import BlendBackend
from videoclips import make_clip

from superslomo.apps import interpolate as app
from superslomo.errors import SloMoError
from superslomo.runtime import Interpolator
from superslomo.serving import ray_batch
from superslomo.video import pipeline
from superslomo.video.pipeline import JobPlan, Options, plan_job, run_job
from superslomo.video.segments import plan_segments, segment_jobs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "audio": make_clip(folder / "aac.mp4", frames=10, size=(128, 96), rate=25, audio="aac"),
        "odd": make_clip(folder / "odd.mp4", frames=6, size=(91, 51), rate=24),
    }


def _pix_fmt(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.pix_fmt


@pytest.fixture
def counted(monkeypatch):
    """How often the job probes its input and opens the encoders in memory (check_only)."""
    calls = {"probe": 0, "check": 0}
    probe, writer = pipeline.probe, pipeline.VideoWriter

    def counting_probe(*args, **kwargs):
        calls["probe"] += 1
        return probe(*args, **kwargs)

    def counting_writer(*args, **kwargs):
        calls["check"] += bool(kwargs.get("check_only"))
        return writer(*args, **kwargs)

    monkeypatch.setattr(pipeline, "probe", counting_probe)
    monkeypatch.setattr(pipeline, "VideoWriter", counting_writer)
    return calls


def _blend_model(monkeypatch, opened: list):
    from superslomo.apps import models

    def open_model(*args, **kwargs):
        opened.append(args)
        return Interpolator(BlendBackend()), "blend"

    monkeypatch.setattr(models, "open_model", open_model)


# (a) the plan is what the local job runs, and it is made once ---------------------------------


def test_the_local_job_runs_the_plan_it_was_given(clips, tmp_path):
    plan = plan_job(clips["audio"], tmp_path / "out.mp4", Options(factor=2))
    assert (plan.out_rate, plan.slowdown, plan.output_kind) == (Fraction(50), 1, "video")
    assert plan.keep_audio and plan.audio == "copy" and plan.pix_fmt == "yuv420p"
    summary = run_job(plan, Interpolator(BlendBackend()), "blend", progress=False, say=lambda s: None)
    assert (summary.out_rate, summary.slowdown, summary.audio) == (plan.out_rate, plan.slowdown, plan.audio)
    assert _pix_fmt(tmp_path / "out.mp4") == plan.pix_fmt


def test_the_plan_decides_dropped_audio_and_the_notes_the_job_says(clips, tmp_path):
    slowed = plan_job(clips["audio"], tmp_path / "slow.mp4", Options(factor=2, slowmo=True))
    assert not slowed.keep_audio and slowed.audio == "dropped (the video is slowed down)"
    assert slowed.audio_note.startswith("audio dropped: the output is 2x slower")
    said: list[str] = []
    summary = run_job(slowed, Interpolator(BlendBackend()), "blend", progress=False, say=said.append)
    assert summary.audio == slowed.audio and said == [f"note: {slowed.audio_note}"]

    odd = plan_job(clips["odd"], tmp_path / "odd.mp4", Options())
    assert odd.pix_fmt == "yuv420p" and odd.picture_note.startswith("91x51 is odd")
    said.clear()
    summary = run_job(odd, Interpolator(BlendBackend()), "blend", progress=False, say=said.append)
    assert said == [f"note: {odd.picture_note}"] and summary.notes == [odd.picture_note]

    frames = plan_job(clips["odd"], tmp_path / "frames" / "%04d.png", Options())
    assert frames.output_kind == "sequence" and frames.to_sequence and frames.pix_fmt is None
    assert frames.audio == "none (the source has none)"


def test_the_app_plans_a_local_job_once(clips, tmp_path, monkeypatch, counted):
    opened: list = []
    _blend_model(monkeypatch, opened)
    summary = app.interpolate(clips["audio"], tmp_path / "out.mp4", Options(), app.Where(), lambda s: None)
    assert opened and summary.frames_out > 0
    # One probe and one in-memory encoder check for the whole job (it was two of each).
    assert counted == {"probe": 1, "check": 1}


def test_the_app_hands_the_ray_driver_its_plan(clips, tmp_path, monkeypatch, counted):
    from superslomo.apps import models

    class Closed:
        def close(self):
            pass

    monkeypatch.setattr(models, "choose_model", lambda *a, **k: ("choice", Closed(), "blend"))
    handed = {}

    def run_on_ray(plan, model, **kwargs):
        handed.update(plan=plan, model=model, **kwargs)
        return plan.summary("blend")

    monkeypatch.setattr(ray_batch, "run_on_ray", run_on_ray)
    out = tmp_path / "out.mp4"
    app.interpolate(clips["audio"], out, Options(factor=3), app.Where(ray="local"), lambda s: None)
    plan = handed["plan"]
    assert isinstance(plan, JobPlan) and handed["model"] == "choice"
    assert (plan.output, plan.out_rate, plan.pix_fmt) == (out, Fraction(75), "yuv420p")
    assert counted == {"probe": 1, "check": 1}


# (b) bad input: the same one-line error, before any model is loaded -------------------------


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("missing.mp4", Options(), "input not found: "),
        ("audio", Options(factor=1), "--factor must be between 2 and 64, got 1"),
        ("audio", Options(crf=60), "--crf must be between 0 and 51, got 60"),
        ("audio", Options(fps=30, factor=3), "--factor with --fps only makes sense with --slowmo"),
        ("audio", Options(pix_fmt="rgb48le"), "libx264 cannot write --pix-fmt rgb48le"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_a_model_loads(
    clips, tmp_path, monkeypatch, name, options, message
):
    source = clips.get(name, tmp_path / name)
    with pytest.raises(SloMoError) as planned:
        plan_job(source, tmp_path / "out.mp4", options)
    assert str(planned.value).startswith(message) and "\n" not in str(planned.value)
    opened: list = []
    _blend_model(monkeypatch, opened)
    with pytest.raises(SloMoError) as ran:
        app.interpolate(source, tmp_path / "out.mp4", options, app.Where(), lambda s: None)
    assert str(ran.value) == str(planned.value) and not opened
    assert not (tmp_path / "out.mp4").exists()


# (c) the Ray driver uses the plan, not the pipeline's internals -----------------------------


def test_the_ray_driver_imports_only_the_plan_from_the_pipeline():
    for gone in (
        "plan_rates",
        "validate",
        "note_variable_rate",
        "plan_audio",
        "audio_source",
        "_final_pix_fmt",
    ):
        assert not hasattr(ray_batch, gone), gone
        assert not hasattr(pipeline, gone) or gone == "_final_pix_fmt", gone
    source = (ROOT / "superslomo" / "serving" / "ray_batch.py").read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "superslomo.video.pipeline":
            names.update(alias.name for alias in node.names)
    assert names == {"JobPlan", "Options", "Summary", "claim_output", "plan_job"}
    assert "check_only" not in source


def test_segment_jobs_come_from_the_plan(clips, tmp_path):
    plan = plan_job(clips["audio"], tmp_path / "out.mp4", Options(factor=4, slowmo=True, start=0.04))
    segments = plan_segments(plan.info, plan.options.start, plan.options.duration, segment_frames=1)
    for job in segment_jobs(plan, segments):
        assert (job.out_rate, job.slowdown, job.pix_fmt) == (plan.out_rate, plan.slowdown, plan.pix_fmt)
        assert (job.start, job.duration, job.scene_threshold) == (0.04, None, plan.options.scene_threshold)
        assert pickle.loads(pickle.dumps(job)) == job


# (d) the plan crosses processes ---------------------------------------------------------------


def test_the_plan_pickles_and_is_frozen(clips, tmp_path):
    options = Options(factor=2)
    plan = plan_job(clips["audio"], tmp_path / "out.mp4", options)
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan and again.info == plan.info and again.options == plan.options
    with pytest.raises(AttributeError):
        plan.slowdown = 3  # type: ignore[misc]
    options.factor = 8  # the caller's options are its own: the plan keeps what it checked
    assert plan.options.factor == 2
