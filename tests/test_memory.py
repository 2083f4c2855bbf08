"""A job's resident set is bounded by its frame size, not by the video's length: frames stream
through decode, a bounded queue of pairs and the encoder. Watched on whole processes (os.wait4
gives each child's own peak), at a small size; the 2160p figure is in docs/performance.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb(command: list[str], env: dict) -> float:
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, child.stderr.read().decode() if child.stderr else ""
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def test_a_jobs_peak_memory_does_not_grow_with_the_videos_length(small_model, tmp_path):
    from superslomo.export import ExportOptions, export_model
    from tests.videoclips import make_clip

    folder = tmp_path / "onnx"
    export_model(small_model, folder, ExportOptions(flow_scale=0.25, interp_scale=0.25))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLOMO_CACHE_DIR": str(tmp_path / "cache")}
    peaks = {}
    for frames in (4, 16):
        clip = make_clip(tmp_path / f"in{frames}.mp4", frames=frames, size=(640, 384))
        job = [sys.executable, "-m", "superslomo.cli", "interpolate", str(clip), "-y", "--factor", "4"]
        job += ["-o", str(tmp_path / "o.mp4"), "--model", str(folder), "--backend", "onnxruntime"]
        job += ["--precision", "fp32"]
        peaks[frames] = peak_rss_mb(job, env)
    # 4x the frames (3 new frames per pair): the same peak, within allocator noise. A job that kept
    # its frames would add 12 pairs x 4 frames x 640x384x3 bytes (35 MB), and more as float32.
    assert peaks[16] <= peaks[4] * 1.05 + 15, peaks
