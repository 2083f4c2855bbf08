"""The Ray driver's bookkeeping that needs no cluster: whose temporary files a run may remove in a
shared work folder, and a finished encode kept when its target appeared meanwhile."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from superslomo.errors import SloMoError
from superslomo.serving.ray_batch import RunClaim


def test_a_run_removes_its_own_temporary_files_and_dead_runs_but_never_a_live_ones(tmp_path):
    mine, other = RunClaim(tmp_path), RunClaim(tmp_path)  # two runs sharing one --work-dir
    theirs = tmp_path / f".seg-00001.partial-{other.id}-4242.mkv"
    own = tmp_path / f".seg-00002.partial-{mine.id}-4243.mkv"
    dead_lock = tmp_path / ".run-0123456789ab.lock"  # a killed driver's: nobody holds it
    dead = tmp_path / ".seg-00003.partial-0123456789ab-4244.mkv"
    finished = tmp_path / "seg-00000.mkv"
    for path in (theirs, own, dead_lock, dead, finished):
        path.write_bytes(b"x")
    mine.remove_stale()
    assert theirs.exists() and own.exists() and finished.exists()
    assert not dead.exists() and not dead_lock.exists()
    mine.remove_partials()
    assert not own.exists() and theirs.exists()
    mine.release()
    other.release()
    assert not list(tmp_path.glob(".run-*.lock"))


def test_a_finished_encode_is_kept_when_its_target_appeared(tmp_path):
    from videoclips import make_clip

    from superslomo.video.decode import probe
    from superslomo.video.encode import VideoWriter

    info = probe(make_clip(tmp_path / "in.mp4", frames=4, size=(64, 48), rate=25))
    target = tmp_path / "out.mp4"
    writer = VideoWriter(target, info, Fraction(25), keep_on_conflict=True)
    for value in range(4):
        writer.write(np.full((48, 64, 3), 60 * value, np.uint8))
    target.write_bytes(b"another run's")  # appeared meanwhile
    with pytest.raises(SloMoError) as caught:
        writer.finish()
    text = str(caught.value)
    assert "appeared while this run was writing" in text and "kept as" in text and "\n" not in text
    kept = tmp_path / "out.1.mp4"
    assert text.endswith(str(kept)) and probe(kept).frames == 4
    assert target.read_bytes() == b"another run's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.1.mp4", "out.mp4"]
