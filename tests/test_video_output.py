"""One run per output, and no output replaced unasked (issue 14: two runs writing the same file
both reported success, the last rename silently winning; an existing file was overwritten
without a word)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from test_video_pipeline import BlendBackend, cli
from videoclips import make_clip, stream_facts

from superslomo.errors import SloMoError
from superslomo.runtime import Interpolator
from superslomo.video.pipeline import Options, interpolate_video


class SlowBackend(BlendBackend):
    """The cross-fade stand-in, slowed down so that runs overlap; `during` runs once, mid-run."""

    def __init__(self, delay: float = 0.05, during=None) -> None:
        super().__init__()
        self.delay = delay
        self.during = during

    def infer(self, graph, inputs):
        time.sleep(self.delay)
        if self.during is not None and graph == "interp":
            self.during, during = None, self.during
            during()
        return super().infer(graph, inputs)


def run(src, dst, backend=None, **options):
    return interpolate_video(
        src,
        dst,
        Interpolator(backend or BlendBackend()),
        "blend",
        Options(**options),
        progress=False,
        say=lambda s: None,
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "c.mp4", frames=6, size=(64, 48), rate=25)


def test_existing_output_is_refused_before_the_model_loads(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"someone's earlier result")
    # A model that does not exist: the refusal must come before any attempt to load one.
    code, _, err = cli(
        ["interpolate", str(clip), "-o", str(out), "--model", str(tmp_path / "no-model")], capsys
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "o.mp4 exists" in lines[0] and "-y/--overwrite" in lines[0]
    assert out.read_bytes() == b"someone's earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    with pytest.raises(SloMoError, match="exists"):
        run(clip, out, factor=2)  # the API refuses it the same way


def test_overwrite_replaces_an_existing_output(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"old")
    run(clip, out, factor=2, overwrite=True)
    assert stream_facts(out)["frames"] == 12
    out.write_bytes(b"old again")
    from superslomo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "interpolate",
                str(clip),
                "-o",
                str(out),
                "-y",
                "--model",
                str(tmp_path / "none"),
                "--factor",
                "2",
            ]
        )
    # -y gets past the existence check; this run then stops at the missing model, leaving the file.
    assert exit_info.value.code == 2 and "exists" not in capsys.readouterr().err
    assert out.read_bytes() == b"old again"


def test_two_runs_at_once_exactly_one_succeeds(clip, tmp_path):
    out = tmp_path / "o.mp4"
    results: list[object] = [None, None]

    def one(index: int) -> None:
        try:
            results[index] = run(clip, out, SlowBackend(), factor=4)
        except SloMoError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    errors = [r for r in results if isinstance(r, SloMoError)]
    assert len(errors) == 1, results
    assert "being written by another run" in str(errors[0]) or "exists" in str(errors[0])
    assert stream_facts(out)["frames"] == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # no lock, no temp file left


def test_a_run_in_another_process_holds_the_output(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(tmp_path / '.o.mp4.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
                "print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = cli(
            ["interpolate", str(clip), "-o", str(out), "--model", str(tmp_path / "none")], capsys
        )
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"being written by another run (pid {holder.pid})" in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_run_is_taken_over(clip, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    lock = tmp_path / ".o.mp4.lock"
    lock.write_text(dead.stdout)  # what a killed run leaves: the file, with no lock on it
    run(clip, tmp_path / "o.mp4", factor=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]


def test_an_output_that_appears_meanwhile_is_not_clobbered(clip, tmp_path):
    out = tmp_path / "o.mp4"
    backend = SlowBackend(delay=0, during=lambda: out.write_bytes(b"written by someone else"))
    with pytest.raises(SloMoError, match="appeared while this run was writing"):
        run(clip, out, backend, factor=2)
    assert out.read_bytes() == b"written by someone else"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    # Asked to overwrite, the run replaces it.
    backend = SlowBackend(delay=0, during=lambda: out.write_bytes(b"again"))
    run(clip, out, backend, factor=2, overwrite=True)
    assert stream_facts(out)["frames"] == 12
