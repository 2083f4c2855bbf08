"""Start-up apart from per-frame cost: whole `slomo interpolate` processes on the default path.

Two jobs on the same clip, alternating: one of 2 source frames (one pair) and one of N. The
difference gives the cost of a frame; the 2-frame job minus one pair's share is the start-up
(interpreter, imports, model resolution, loading or compiling the graphs, encoder set-up). Run it
twice: the first round pays first-use costs (export, speed probe, OpenVINO compiling into its
cache) and is reported apart.

    python benchmarks/startup.py --clip ../shared/data/debian_opencv_doc/cup.mp4 --frames 10 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CPU = {}  # wall seconds of a run -> its CPU seconds (user + system), which load does not inflate


def job(clip: Path, frames: int, rate: float, out: Path) -> float:
    seconds = (frames - 0.5) / rate
    command = [sys.executable, "-m", "superslomo.cli", "interpolate", str(clip), "-o", str(out), "-y"]
    command += ["--duration", f"{seconds:.6f}", "--no-audio"]
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"job failed: {child.stderr.read().decode().strip().splitlines()[-1]}")  # type: ignore[union-attr]
    CPU[wall] = usage.ru_utime + usage.ru_stime
    return wall


def main() -> None:
    from superslomo.video.decode import probe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rate = float(probe(args.clip).rate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        first = job(args.clip, 2, rate, out)
        short, long = [], []
        for round_ in range(args.rounds):
            pair = [(short, 2), (long, args.frames)]
            for times, frames in pair if round_ % 2 == 0 else pair[::-1]:
                times.append(job(args.clip, frames, rate, out))
    per_frame = (statistics.median(long) - statistics.median(short)) / (args.frames - 2)
    startup = statistics.median(short) - per_frame
    load = os.getloadavg()[0]
    print(
        f"{args.clip.name} ({probe(args.clip).width}x{probe(args.clip).height}), {args.rounds} rounds, "
        f"load {load:.1f} on {os.cpu_count()} cores"
    )
    print(f"  first use (untimed round): {first:.2f} s for a 2-frame job")
    print(f"  2-frame job: {statistics.median(short):.2f} s (runs {', '.join(f'{t:.2f}' for t in short)})")
    runs = ", ".join(f"{t:.2f}" for t in long)
    print(f"  {args.frames}-frame job: {statistics.median(long):.2f} s (runs {runs})")
    print(f"  per source frame: {per_frame:.3f} s; start-up (2-frame job minus one frame): {startup:.2f} s")
    cpu_short = statistics.median(CPU[t] for t in short)
    cpu_frame = (statistics.median(CPU[t] for t in long) - cpu_short) / (args.frames - 2)
    print(
        f"  CPU seconds (user + system, all threads): 2-frame job {cpu_short:.2f}, per source frame "
        f"{cpu_frame:.3f}, start-up {cpu_short - cpu_frame:.2f}"
    )


if __name__ == "__main__":
    main()
