"""The scales a model runs at, per frame-size band: measured once per model, kept beside it.

A network trained on small frames sees a 4K frame's motion as ten times the displacement it
learnt; run on the pair downscaled (model/scaled.py) it sees what it knows, at a fraction of the
cost. How far to go down is a property of the model and of the frame size, so it is data: a
table beside the checkpoint, named by its weights record (apps/weights.py; one owner:
`slomo scales`), which `job_scales` reads for every job of a checkpoint.

How the table is made (`measure_scales`): triplets f(i), f(i+1), f(i+2) of licensed validation
footage (never an evaluation set), every other frame held out, resized to each band's height
(aspect kept). For each band, each candidate pair of scales runs the pair to its middle frame
beside ffmpeg's minterpolate on the same triplets, order alternating; PSNR against the held-out
frame and the median time of one new frame are recorded (minterpolate's as it streams the
triplet to twice its rate: its time per new frame in an ffmpeg job). The band's scales: the best PSNR
among the candidates whose time is within `budget_ratio` x minterpolate's (the race the model
must win; a band may have its own ratio), the fastest of those within TIE_DB of it; none within:
the fastest. A candidate
more than DROP_FACTOR x over that budget on a timed triplet is measured no further (it cannot
be chosen; 4K at full scale would cost minutes per band).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superslomo.apps import weights
from superslomo.contracts.manifest import FULL_SCALES, SCALES
from superslomo.errors import SloMoError


@dataclass(frozen=True)
class Band:
    name: str
    height: int  # the footage is resized to this height to measure the band
    from_height: int  # jobs of at least this many lines (and fewer than the next band's) use it


# The lower edges sit between the nominal heights, so 540p goes with 480p and 1440p with 1080p.
# Under 400 lines nothing is measured: the networks run at full scale, as they were trained.
BANDS = (
    Band("480p", 480, 400),
    Band("720p", 720, 600),
    Band("1080p", 1080, 900),
    Band("2160p", 2160, 1620),
)
DEFAULT_BUDGET_RATIO = 1.0
DROP_FACTOR = 3.0
# PSNR differences under this are noise on a few triplets: among candidates this close to the best
# the fastest wins (at 2160p, 1/4+1/2 scored 0.05 dB over 1/4+1/4 at twice the time).
TIE_DB = 0.1
# The networks never run on more lines than this: a U-Net of 640-px training frames gains nothing
# there, and at 2160p/full one pair costs tens of seconds on two cores.
DEFAULT_MAX_NETWORK_LINES = 1080


def table_path(checkpoint: Path) -> Path:
    """Where the checkpoint's scale table is read and written: its weights record's `scales`."""
    return weights.record_for(checkpoint).scales


def band_for(height: int, bands: Sequence[dict]) -> dict | None:
    """The band of a table whose range holds `height` lines; None below the lowest."""
    chosen = None
    for band in sorted(bands, key=lambda b: b["from_height"]):
        if height >= band["from_height"]:
            chosen = band
    return chosen


def read_table(checkpoint: Path) -> dict | None:
    """The checkpoint's scale table if it is this checkpoint's (sha256) and well formed, else None."""
    from superslomo.contracts.files import file_sha256

    path = table_path(checkpoint)
    try:
        table = json.loads(path.read_text())
        for band in table["bands"]:
            scales = band["scales"]
            if set(scales) != set(FULL_SCALES) or not all(v in SCALES for v in scales.values()):
                return None
            int(band["from_height"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return table if table.get("sha256") == file_sha256(checkpoint) else None


def scales_for(checkpoint: Path, size: tuple[int, int]) -> tuple[dict[str, float] | None, str]:
    """The scales of the table's band for a job of `size` (WIDTH, HEIGHT), and the band's name
    ("" without a table or below its lowest band: full scale)."""
    table = read_table(checkpoint)
    band = band_for(size[1], table["bands"]) if table else None
    if band is None:
        return None, ""
    scales = {graph: float(band["scales"][graph]) for graph in FULL_SCALES}
    return (None if scales == FULL_SCALES else scales), band["band"]


def candidate_scales(height: int, max_lines: int = DEFAULT_MAX_NETWORK_LINES) -> list[dict[str, float]]:
    """The pairs measured at a band: the flow network no finer than synthesis (flows are smooth;
    the frame's detail comes from warping the full-size frames), at most one octave apart, and
    no network on more than `max_lines` lines; cheapest first."""
    pairs = [
        {"flow": flow, "interp": interp}
        for flow in SCALES
        for interp in SCALES
        if flow <= interp <= 2 * flow and interp * height <= max_lines
    ]
    return sorted(pairs, key=lambda s: (s["flow"] ** 2 + s["interp"] ** 2, s["interp"]))


def scales_name(scales: dict[str, float]) -> str:
    return "/".join(f"1/{round(1 / scales[g])}" if scales[g] != 1 else "1" for g in ("flow", "interp"))


@dataclass
class Measured:
    scales: dict[str, float] | None  # None: minterpolate
    psnr: list[float] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    dropped: bool = False

    def entry(self) -> dict:
        timed = self.ms[1:] or self.ms  # the first call of a size compiles it: not timed if others were
        out = {
            "psnr_db": round(float(np.mean(self.psnr)), 3),
            "ms": round(float(np.median(timed))),
            "triplets": len(self.psnr),
        }
        if self.scales is not None:
            out = {**self.scales, **out}
        if self.dropped:
            out["over_budget"] = True
        return out


def resize_to_height(frame: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = frame.shape[:2]
    width = max(2, 2 * round(w * height / h / 2))
    if (width, height) == (w, h):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def sample_native(clips: Sequence[Path], pairs: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """`pairs` triplets (name, frame0, middle, frame1) spread over the clips, at each clip's own size,
    the clips taking turns: a candidate dropped after its first triplets was seen on several clips."""
    from superslomo.calibration.sampling import allocate, open_sources, sample_triplets
    from superslomo.video.decode import probe

    sources = open_sources(clips)
    quotas = allocate([s.triplets for s in sources], pairs)
    if sum(quotas) < pairs:
        have = sum(s.triplets for s in sources)
        raise SloMoError(f"the footage holds {have} triplets; cannot sample {pairs} (lower --pairs)")
    per_clip = []
    for source, quota in zip(sources, quotas, strict=True):
        if quota == 0:
            continue
        if source.path.is_dir():
            from superslomo.video.frames import list_frame_files, read_image

            height, width = read_image(list_frame_files(source.path)[0]).shape[:2]
        else:
            info = probe(source.path)
            width, height = info.width, info.height
        samples = sample_triplets([source], quota, (width, height))
        per_clip.append([(source.path.name, s.frame0, s.target, s.frame1) for s in samples])
    longest = max(len(clip) for clip in per_clip)
    return [clip[i] for i in range(longest) for clip in per_clip if i < len(clip)]


def measure_band(
    band: Band,
    triplets: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    open_candidate: Callable[[dict[str, float]], object],
    max_lines: int,
    budget_ratio: float,
    say: Callable[[str], None] | None,
) -> dict:
    from superslomo.eval.metrics import psnr
    from superslomo.eval.minterpolate import minterpolate_middle, minterpolate_stream_seconds

    candidates = candidate_scales(band.height, max_lines)
    runs = [Measured(None)] + [Measured(scales) for scales in candidates]
    interps = {index: open_candidate(run.scales) for index, run in enumerate(runs) if run.scales is not None}
    try:
        for number, (_name, frame0, middle, frame1) in enumerate(triplets):
            frame0, middle, frame1 = (resize_to_height(f, band.height) for f in (frame0, middle, frame1))
            order = list(range(len(runs)))
            for index in order if number % 2 == 0 else order[::-1]:  # who goes first alternates
                run = runs[index]
                if run.dropped:
                    continue
                if run.scales is None:  # its quality on the pair, its time as a stream of the triplet
                    run.psnr.append(psnr(minterpolate_middle(frame0, frame1), middle))
                    run.ms.append(1000 * minterpolate_stream_seconds([frame0, middle, frame1]))
                    continue
                began = time.perf_counter()
                (frame,) = interps[index].interpolate(frame0, frame1, [0.5])
                run.ms.append(1000 * (time.perf_counter() - began))
                run.psnr.append(psnr(frame, middle))
            budget = budget_ratio * float(np.median(runs[0].ms))
            for run in runs[1:]:
                if len(run.ms) >= 2 and min(run.ms[1:]) > DROP_FACTOR * budget:
                    run.dropped = True  # the first call compiles the size; judged on a timed one
    finally:
        for interp in interps.values():
            interp.close()
    return choose(band, runs[0].entry(), [run.entry() for run in runs[1:]], budget_ratio, say)


def choose(band: Band, minterp: dict, entries: list[dict], budget_ratio: float, say) -> dict:
    budget_ms = budget_ratio * minterp["ms"]
    within = [e for e in entries if e["ms"] <= budget_ms and not e.get("over_budget")]
    if within:
        top = max(e["psnr_db"] for e in within)
        best = min((e for e in within if e["psnr_db"] >= top - TIE_DB), key=lambda e: e["ms"])
        why = (
            f"best PSNR within {budget_ratio:g}x minterpolate's time ({budget_ms:.0f} ms; "
            f"the fastest within {TIE_DB:g} dB of the best)"
        )
    else:
        best = min(entries, key=lambda e: e["ms"])
        why = f"none within {budget_ratio:g}x minterpolate's time ({budget_ms:.0f} ms): the fastest"
    scales = {"flow": best["flow"], "interp": best["interp"]}
    if say is not None:
        for e in entries:
            mark = "*" if e is best else " "
            over = " (over budget, dropped)" if e.get("over_budget") else ""
            say(
                f"{band.name} {mark} flow/interp {scales_name(e):8s} {e['psnr_db']:6.2f} dB "
                f"{e['ms']:7.0f} ms{over}"
            )
        say(f"{band.name}   minterpolate       {minterp['psnr_db']:6.2f} dB {minterp['ms']:7.0f} ms; {why}")
    return {
        "band": band.name,
        "height": band.height,
        "from_height": band.from_height,
        "budget_ratio": budget_ratio,
        "scales": scales,
        "why": why,
        "minterpolate": minterp,
        "candidates": entries,
    }


def budget_words(ratio: float, band_budgets: dict[str, float]) -> str:
    """'1x', or '1x (480p: 4x)' when some bands have their own budget."""
    own = ", ".join(f"{name}: {value:g}x" for name, value in band_budgets.items())
    return f"{ratio:g}x" + (f" ({own})" if own else "")


def parse_budget(text: str) -> tuple[float, dict[str, float]]:
    """`--budget`: 'R' for every band, or 'R,480p=R2,...' to give some bands their own."""
    ratio, bands = DEFAULT_BUDGET_RATIO, {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise SloMoError(f"--budget takes R or BAND=R (e.g. 1,480p=4), got {part!r}") from None
        if name:
            bands[name.strip()] = number
        else:
            ratio = number
    return ratio, bands


def measure_scales(
    checkpoint: Path,
    export: Callable[[dict[str, float]], Path],
    clips: Sequence[Path],
    bands: Sequence[Band] = BANDS,
    pairs: int = 6,
    backend: str = "openvino",
    budget_ratio: float = DEFAULT_BUDGET_RATIO,
    max_lines: int = DEFAULT_MAX_NETWORK_LINES,
    say: Callable[[str], None] | None = None,
    band_budgets: dict[str, float] | None = None,
) -> dict:
    """The scale table of `checkpoint` (see the module's docstring); `export(scales)` gives its fp32
    folder at those scales (apps.models.onnx_folder_for, which imports this module). `band_budgets`
    gives some bands a budget of their own (`budget_ratio` is the others')."""
    from superslomo.contracts.files import file_sha256
    from superslomo.runtime import Interpolator, open_backend

    band_budgets = dict(band_budgets or {})
    for ratio in (budget_ratio, *band_budgets.values()):
        if not ratio > 0:
            raise SloMoError(f"--budget must be above 0 (a multiple of minterpolate's time), got {ratio}")
    unknown = sorted(set(band_budgets) - {band.name for band in BANDS})
    if unknown:
        raise SloMoError(f"--budget names an unknown band {unknown[0]!r}")
    if pairs < 1:
        raise SloMoError(f"--pairs must be at least 1, got {pairs}")
    triplets = sample_native(clips, pairs)

    def open_candidate(scales):
        return Interpolator(open_backend(export(scales), backend))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    table_bands = [
        measure_band(b, triplets, open_candidate, max_lines, band_budgets.get(b.name, budget_ratio), say)
        for b in bands
    ]
    return {
        "model": checkpoint.name,
        "sha256": file_sha256(checkpoint),
        "rule": (
            f"per band: the best PSNR among the (flow, interp) scale pairs whose time for one new "
            f"frame is within {budget_words(budget_ratio, band_budgets)} ffmpeg minterpolate's on the "
            "same triplets (none within: the fastest); footage resized to the band's height, every "
            "other frame held out"
        ),
        "backend": backend,
        "budget_ratio": budget_ratio,
        "band_budget_ratios": band_budgets,
        "max_network_lines": max_lines,
        "clips": sorted({name for name, *_ in triplets}),
        "triplets": len(triplets),
        "load_average_at_start": None if load is None else round(load, 2),
        "cpu_count": os.cpu_count(),
        "bands": table_bands,
    }


def write_table(checkpoint: Path, table: dict, command: str) -> Path:
    from superslomo.contracts.files import atomic_write_text

    path = table_path(checkpoint)
    atomic_write_text(path, json.dumps({**table, "command": command}, indent=1) + "\n")
    return path
