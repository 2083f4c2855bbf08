"""The whole-job race: `slomo interpolate`'s default path against ffmpeg's minterpolate, each as its
own process (decode + interpolate + encode), same clip, frame count and encoder settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from superslomo.apps.bench.tables import machine_facts
from superslomo.errors import SloMoError

RACE_AGAINST = ("minterpolate",)


@dataclass
class RaceOptions:
    clip: Path
    frames: int = 16  # source frames of the job
    factor: int = 2
    rounds: int = 2  # each round runs both jobs, one after the other, alternating who goes first
    workdir: Path = Path("out/bench/race")
    crf: float = 14.0  # what `slomo interpolate` uses from 640x360 up, so both encode alike
    preset: str = "fast"
    size: tuple[int, int] | None = None  # the clip resized to WIDTHxHEIGHT first (untimed)
    quality_triplets: int = 0  # PSNR of both on this many triplets of the race's source

    def validate(self) -> None:
        if not self.clip.is_file():
            raise SloMoError(f"race clip not found: {self.clip} (pass --race-clip VIDEO)")
        if self.frames < 2:
            raise SloMoError(f"--race-frames must be at least 2, got {self.frames}")
        if self.factor < 2 or self.rounds < 1:
            raise SloMoError("the race needs a factor >= 2 and at least one round")


def minterpolate_video(clip: Path, output: Path, frames: int, factor: int, crf: float, preset: str) -> int:
    """What `ffmpeg -i CLIP -frames:v N -vf minterpolate=fps=RATE*factor:... -c:v libx264` does,
    through PyAV's libavfilter (no ffmpeg binary here): the first `frames` source frames to
    `frames * factor` output frames, the last one held as `slomo interpolate` holds it. Returns
    the frames written."""
    import av

    from superslomo.eval.minterpolate import FILTER_OPTIONS

    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        if rate is None:
            raise SloMoError(f"{clip} has no frame rate; the race needs one")
        out_rate = Fraction(rate) * factor
        tick = 1 / out_rate
        with av.open(str(output), "w") as sink:
            video = sink.add_stream("libx264", rate=out_rate)
            video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
            video.options = {"crf": f"{crf:g}", "preset": preset}
            graph = av.filter.Graph()
            buffer = graph.add_buffer(template=stream)
            interp = graph.add(
                "minterpolate", f"fps={out_rate.numerator}/{out_rate.denominator}:{FILTER_OPTIONS}"
            )
            out = graph.add("buffersink")
            buffer.link_to(interp)
            interp.link_to(out)
            graph.configure()
            written, last = 0, None  # last: the newest av.VideoFrame out of the filter
            wanted = frames * factor

            def drain() -> None:
                nonlocal written, last
                while written < wanted:
                    try:
                        frame = out.pull()
                    except (av.error.BlockingIOError, av.error.EOFError):
                        return
                    frame.pts, frame.time_base = written, tick
                    last = frame
                    sink.mux(video.encode(frame))  # type: ignore[arg-type]  # a video sink pulls VideoFrames
                    written += 1

            taken = 0
            for frame in source.decode(stream):
                if taken == frames:
                    break
                buffer.push(frame)
                taken += 1
                drain()
            buffer.push(None)
            drain()
            while last is not None and written < wanted:  # the last frame held for its duration
                held = last.reformat()  # type: ignore[attr-defined]
                held.pts, held.time_base = written, tick
                sink.mux(video.encode(held))
                written += 1
            sink.mux(video.encode(None))
    return written


def resized_clip(clip: Path, output: Path, size: tuple[int, int], frames: int) -> Path:
    """The first `frames` frames of `clip` at WIDTHxHEIGHT (bicubic, x264 crf 8): the race's source
    at a size the footage does not come in. Made once per size, untimed."""
    import av

    if output.is_file() and count_video_frames(output) >= frames:
        return output
    width, height = size
    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        with av.open(str(output), "w") as sink:
            video = sink.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"crf": "8", "preset": "fast"}
            for taken, frame in enumerate(source.decode(stream)):
                if taken == frames:
                    break
                resized = frame.reformat(width, height, "yuv420p", interpolation="BICUBIC")
                resized.pts, resized.time_base = taken, Fraction(1) / Fraction(rate)
                sink.mux(video.encode(resized))
            sink.mux(video.encode(None))
    return output


def race_quality(clip: Path, triplets: int, say: Callable[[str], None]) -> dict:
    """PSNR of the default path (as `slomo interpolate` opens it at this size) and of minterpolate
    on triplets f(i), f(i+1), f(i+2) of `clip`, the middle held out."""
    from superslomo.apps.models import open_model
    from superslomo.apps.scales import sample_native
    from superslomo.eval.metrics import psnr
    from superslomo.eval.minterpolate import minterpolate_middle

    samples = sample_native([clip], triplets)
    height, width = samples[0][1].shape[:2]
    interp, label = open_model(None, "auto", "auto", size=(width, height), say=None)
    scores: dict[str, list[float]] = {"slomo": [], "minterpolate": []}
    try:
        for _name, frame0, middle, frame1 in samples:
            (ours,) = interp.interpolate(frame0, frame1, [0.5])  # type: ignore[attr-defined]
            scores["slomo"].append(psnr(ours, middle))
            scores["minterpolate"].append(psnr(minterpolate_middle(frame0, frame1), middle))
    finally:
        interp.close()  # type: ignore[attr-defined]
    say(f"quality on {len(samples)} triplets of {clip.name}: {label}")
    return {"triplets": len(samples), "backend": label, **{k: float(np.mean(v)) for k, v in scores.items()}}


def count_video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.demux(container.streams.video[0]) if _.size)


def _timed(command: list[str]) -> float:
    import subprocess

    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise SloMoError(f"race job failed ({' '.join(command[:4])} ...): {lines[-1]}")
    return seconds


def run_race(options: RaceOptions, say: Callable[[str], None] = print) -> dict:
    """The whole job both ways, as separate processes one after the other: `slomo interpolate` on
    its default path (auto backend and precision) against ffmpeg's minterpolate, same clip, same
    output frame count, same encoder settings. First-use costs of the slomo side (the ONNX export
    and the per-machine speed probe, both cached) are paid once in an untimed run first and
    reported apart: a user pays them once per machine, not per job."""
    import sys

    from superslomo.video.decode import probe as probe_video

    options.validate()
    options.workdir.mkdir(parents=True, exist_ok=True)
    if options.size is not None:
        width, height = options.size
        resized = options.workdir / f"source-{options.clip.stem}-{width}x{height}.mp4"
        say(f"resizing {options.clip.name} to {width}x{height} (untimed) ...")
        options.clip = resized_clip(options.clip, resized, options.size, options.frames + 2)
    info = probe_video(options.clip)
    seconds = (options.frames - 0.5) / float(info.rate)  # exactly `frames` source frames
    ours = options.workdir / "slomo.mp4"
    theirs = options.workdir / "minterpolate.mp4"
    python = sys.executable
    slomo = [python, "-m", "superslomo.cli", "interpolate", str(options.clip), "-o", str(ours), "-y"]
    slomo += ["--factor", str(options.factor), "--duration", f"{seconds:.6f}", "--no-audio"]
    slomo += ["--preset", options.preset, "--crf", f"{options.crf:g}"]
    mint = [python, "-m", "superslomo.apps.bench", "minterpolate", str(options.clip), str(theirs)]
    mint += [str(options.frames), str(options.factor), f"{options.crf:g}", options.preset]
    say("untimed first run of slomo interpolate (export and speed probe, cached for the timed runs) ...")
    first_use = _timed(slomo)
    times: dict[str, list[float]] = {"slomo": [], "minterpolate": []}
    for round_ in range(options.rounds):
        order = [("slomo", slomo), ("minterpolate", mint)]
        for name, command in order if round_ % 2 == 0 else order[::-1]:
            say(f"round {round_ + 1}: {name} ...")
            times[name].append(_timed(command))
    counts = {"slomo": count_video_frames(ours), "minterpolate": count_video_frames(theirs)}
    if counts["slomo"] != counts["minterpolate"]:
        raise SloMoError(f"the two jobs wrote different frame counts: {counts}; the race is not fair")
    best = {name: min(values) for name, values in times.items()}
    quality = race_quality(options.clip, options.quality_triplets, say) if options.quality_triplets else None
    return {
        "quality": quality,
        "clip": options.clip.name,
        "size": f"{info.width}x{info.height}",
        "source_frames": options.frames,
        "output_frames": counts["slomo"],
        "factor": options.factor,
        "seconds": times,
        "best_s": best,
        "ratio": best["slomo"] / best["minterpolate"],
        "first_use_s": first_use,
        "machine": machine_facts(),
    }


def race_lines(race: dict) -> list[str]:
    count = race["output_frames"]
    rows = [("slomo interpolate (default path)", "slomo"), ("ffmpeg minterpolate (PyAV)", "minterpolate")]
    lines = [
        f"race: {race['clip']} {race['size']}, {race['source_frames']} frames x{race['factor']} -> "
        f"{count} frames, decode + interpolate + encode, whole processes one after the other"
    ]
    for words, name in rows:
        seconds = race["best_s"][name]
        lines.append(f"  {words:34s} {seconds:7.1f} s  {1000 * seconds / count:6.0f} ms/frame")
    lines.append(
        f"  slomo / minterpolate: {race['ratio']:.2f}x the time (target <= 1.0x); first use of slomo on "
        f"this machine (export + speed probe, once): {race['first_use_s']:.1f} s"
    )
    quality = race.get("quality")
    if quality:
        lines.append(
            f"  PSNR on {quality['triplets']} triplets of the race's source (every other frame held out): "
            f"slomo {quality['slomo']:.2f} dB, minterpolate {quality['minterpolate']:.2f} dB "
            f"[{quality['backend']}]"
        )
    return lines


def main(argv: list[str]) -> None:
    """The minterpolate side of the race, run as its own process: `python -m superslomo.apps.bench
    minterpolate CLIP OUT FRAMES FACTOR CRF PRESET`."""
    import sys

    if len(argv) != 7 or argv[0] != "minterpolate":
        sys.exit("usage: python -m superslomo.apps.bench minterpolate CLIP OUT FRAMES FACTOR CRF PRESET")
    clip, out, frames, factor, crf, preset = argv[1:]
    print(minterpolate_video(Path(clip), Path(out), int(frames), int(factor), float(crf), preset))
