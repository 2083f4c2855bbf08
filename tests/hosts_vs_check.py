"""Drives `superslomo.vapoursynth.slomo` for tests/test_hosts.py inside the VapourSynth environment
(Python >= 3.12, `make vapoursynth-env`).

usage: python hosts_vs_check.py IN.npz OUT.npz SPEC, SPEC a JSON object: model, backend, precision,
factor or fps, format (RGB24 | RGBS), rate [num, den], props {index: {name: value}} set on source
frames, cache_pairs, long (a clip of that many frames for the memory check instead of IN's frames).
OUT.npz gets the output frames in order, their props, the clip's rate and length, whether frames
asked for in reverse, shuffled and from several threads at once equal them, and the flow count.
"""

import json
import random
import sys
from fractions import Fraction

import numpy as np
import vapoursynth as vs

from superslomo.hosts.pairs import open_interpolator
from superslomo.vapoursynth import slomo

core = vs.core
core.num_threads = 4  # requests in parallel even on two cores


def source_clip(frames: np.ndarray, fmt: str, rate: Fraction, props: dict) -> vs.VideoNode:
    count, height, width, _ = frames.shape
    blank = core.std.BlankClip(
        format=getattr(vs, fmt), width=width, height=height, length=count,
        fpsnum=rate.numerator, fpsden=rate.denominator,
    )  # fmt: skip

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            plane = frames[n, ..., p]
            np.copyto(np.asarray(out[p]), plane if fmt == "RGB24" else plane.astype(np.float32) / 255.0)
        for key, value in props.get(str(n), {}).items():
            out.props[key] = value
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def rgb(frame) -> np.ndarray:
    return np.dstack([np.asarray(frame[p]) for p in range(3)]).copy()


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def main() -> None:
    source, target, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    rate = Fraction(*spec.get("rate", [25, 1]))
    if spec.get("long"):
        rng = np.random.default_rng(0)
        base = (rng.random((8, 32, 64, 3)) * 255).astype(np.uint8)
        frames = base[np.arange(spec["long"]) % 8]
    else:
        frames = np.load(source)["frames"]
    clip = source_clip(frames, spec.get("format", "RGB24"), rate, spec.get("props", {}))
    height, width = frames.shape[1:3]
    interp, _ = open_interpolator(spec["model"], spec["backend"], spec["precision"], (width, height), None)
    prepared = []
    prepare = interp.prepare

    def counted(frame0, frame1):
        prepared.append(1)
        return prepare(frame0, frame1)

    interp.prepare = counted
    options = {k: spec[k] for k in ("factor", "cache_pairs") if spec.get(k) is not None}
    if spec.get("fps"):
        options["fps"] = Fraction(spec["fps"])
    out = slomo(clip, interpolator=interp, scene_change=spec.get("scene_change", True), **options)
    result = {"fps": np.array([out.fps.numerator, out.fps.denominator]), "num_frames": out.num_frames}
    if spec.get("long"):
        rss = []
        for index, _ in enumerate(out.frames(prefetch=4)):
            if index in (out.num_frames // 4, out.num_frames - 1):
                rss.append(rss_mib())
        result.update(rss=np.array(rss), flows=len(prepared))
        np.savez(target, **result)
        return
    # Parallel in order first (VapourSynth's prefetch): each pair's flow once.
    ordered = [rgb(frame) for frame in out.frames(prefetch=8)]
    result["flows_in_order"] = len(prepared)
    props = [dict(out.get_frame(n).props) for n in range(out.num_frames)]
    indices = list(range(out.num_frames))
    random.Random(1).shuffle(indices)
    reverse = [rgb(out.get_frame(n)) for n in reversed(range(out.num_frames))][::-1]
    futures = {n: out.get_frame_async(n) for n in indices}
    shuffled = [rgb(futures[n].result()) for n in range(out.num_frames)]
    result.update(
        frames=np.stack(ordered),
        props=np.array(json.dumps(props, default=float)),
        reverse_same=all(np.array_equal(a, b) for a, b in zip(ordered, reverse, strict=True)),
        parallel_same=all(np.array_equal(a, b) for a, b in zip(ordered, shuffled, strict=True)),
    )
    np.savez(target, **result)


if __name__ == "__main__":
    main()
