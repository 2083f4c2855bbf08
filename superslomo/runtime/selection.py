"""Which backend and precision run an ONNX model on this CPU: the fastest candidate whose measured
accuracy drop is within a budget (DESIGN.md, decision 8). Torch-free, like the rest of runtime/.

Accuracy comes from the model's accuracy report (PSNR drop of each runtime x precision against
fp32 on real held-out frames, measured once and shipped with the model); speed is measured here,
on this machine at the job's padded frame size, because it depends on both: on one 2-core AMD
EPYC VM OpenVINO's bf16 ran 3.8x PyTorch eager, on another the same model name had no bf16 at all
and the bf16 hint compiled to f32. The probe's result is cached under a key of everything that
changes the answer (CPU and its instruction sets, core count, runtime versions, the folders'
manifests, the padded size), so only the first job of a size on a machine pays it.

Rules, in order:
- fp32 on any installed runtime is always eligible: its accuracy is the fp32 parity gate CI runs.
- another precision is eligible only with a measured drop within the budget, and never when the
  report says `"auto": false` (OpenVINO's INT8 loses several dB for a reason not yet understood).
- bf16 is a candidate only where the CPU computes in bf16 (OpenVINO lists BF16 among its CPU's
  optimization capabilities); elsewhere the hint silently compiles to f32.
- fp16 is never picked on a CPU (no fp16 arithmetic: the weights are rounded, nothing is faster).
A pinned runtime or precision narrows the candidates; a pinned precision skips the budget (the
user asked for it) but the drop is still printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superslomo.contracts.files import atomic_write_text
from superslomo.contracts.frames import padded_size
from superslomo.errors import SloMoError
from superslomo.runtime.options import OnnxRuntimeOptions, OpenVinoOptions

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8", "fp16")
AUTO_PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_BUDGET_DB = 0.3
REFERENCE = "onnxruntime/fp32"
# Rounds of the timing probe after one untimed round (compiles, allocations): the minimum of two
# pair-times per candidate, interleaved, is what a shared 2-core machine lets through reliably.
PROBE_ROUNDS = 2
PRUNE_RATIO = 1.25
CACHE_VERSION = 1
# Instruction sets that change which runtime or precision wins; the CPU's model name alone does
# not tell them apart on a VM ("AMD EPYC" is both a Zen 3 without AVX-512 and a Zen 4 with bf16).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "asimd")


@dataclass(frozen=True)
class Candidate:
    runtime: str
    precision: str
    folder: Path

    @property
    def key(self) -> str:
        return f"{self.runtime}/{self.precision}"

    @property
    def words(self) -> str:
        return f"{self.runtime} {self.precision}"

    def options(self, threads: int | None = None) -> OnnxRuntimeOptions | OpenVinoOptions:
        """The typed options that open this candidate (runtime/options.py)."""
        if self.runtime == "openvino":
            # bf16 is OpenVINO's compute precision over the fp32 graphs; anything else asks for f32
            # explicitly (its CPU default on bf16 machines would fail the fp32 parity gate).
            return OpenVinoOptions(precision="bf16" if self.precision == "bf16" else "f32", threads=threads)
        return OnnxRuntimeOptions(threads=threads)


@dataclass
class Report:
    """The accuracy report: PSNR drop (dB, against fp32 on the same frames) per "runtime/precision"."""

    drops: dict[str, float] = field(default_factory=dict)
    never_auto: dict[str, str] = field(default_factory=dict)  # key -> why it is never picked by auto
    source: str = "none"

    @classmethod
    def load(cls, path: str | os.PathLike) -> Report:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            entries = data["candidates"]
            report = cls(source=path.name)
            for key, entry in entries.items():
                if entry.get("drop_db") is not None:
                    report.drops[key] = float(entry["drop_db"])
                if entry.get("auto") is False:
                    report.never_auto[key] = str(entry.get("why", "excluded by its accuracy report"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise SloMoError(f"unreadable accuracy report {path}: {error}") from None
        return report

    def merge(self, other: Report) -> Report:
        """Both reports' entries; where both measured a precision, the larger drop (a precision is
        as good as its worst measurement, e.g. held-out frames vs its own calibration pairs)."""
        drops = {**other.drops, **self.drops}
        for key in other.drops.keys() & self.drops.keys():
            drops[key] = max(other.drops[key], self.drops[key])
        return Report(
            drops,
            {**other.never_auto, **self.never_auto},
            self.source if other.source == "none" else f"{self.source} + {other.source}",
        )


@dataclass
class Choice:
    candidate: Candidate
    label: str  # the words after "backend: "
    details: str  # the rest of the why: candidates not eligible and why, where the speeds came from
    timings_ms: dict[str, float]  # per 2x pair (flow + one frame), by candidate key; empty: not probed
    cached: bool = False
    interpolator: object | None = None  # the winner, already opened (and compiled at the probe size)


# -- what this machine has ----------------------------------------------------------------------
def cpu_facts() -> dict:
    """CPU model, cores and the instruction sets that matter here (Linux /proc/cpuinfo)."""
    name, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "flags": sorted(f for f in CPU_FLAGS if f in flags)}


def openvino_capabilities() -> list[str] | None:
    """OpenVINO's CPU optimization capabilities (e.g. FP32, BF16, INT8); None without OpenVINO."""
    try:
        import openvino
    except ImportError:
        return None
    try:
        return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError:
        return None


def runtime_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in ("onnxruntime", "openvino"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


# -- candidates -------------------------------------------------------------------------------
def candidates(
    folders: Mapping[str, Path],
    runtimes: Mapping[str, tuple[bool, str]],
    report: Report,
    runtime: str = "auto",
    precision: str = "auto",
    budget_db: float = DEFAULT_BUDGET_DB,
    bf16: bool = False,
) -> tuple[list[Candidate], dict[str, str]]:
    """The eligible candidates and, for every other pair considered, why not.

    `folders`: ONNX folders by precision ("fp32", "int8", ...); `runtimes`: runtime -> (usable, why
    not); `bf16`: whether the CPU computes in bf16."""
    if runtime not in ("auto", *RUNTIMES):
        raise SloMoError(f"the CPU backends are {', '.join(RUNTIMES)}; got {runtime!r}")
    if precision not in ("auto", *PRECISIONS):
        raise SloMoError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    if budget_db < 0:
        raise SloMoError(f"the accuracy budget must be >= 0 dB, got {budget_db}")
    precisions = AUTO_PRECISIONS if precision == "auto" else (precision,)
    names = RUNTIMES if runtime == "auto" else (runtime,)
    eligible: list[Candidate] = []
    why_not: dict[str, str] = {}
    for name in names:
        usable, reason = runtimes.get(name, (False, f"{name} is not installed"))
        for prec in precisions:
            key = f"{name}/{prec}"
            folder = folders.get("fp32" if prec == "bf16" else prec)
            if prec == "bf16" and name != "openvino":
                continue  # only OpenVINO computes fp32 graphs in bf16; not a choice to report
            if prec == "fp16" and name == "openvino" and runtime == "auto":
                continue  # fp16 folders are for GPUs; onnxruntime runs them on the CPU when asked
            if not usable:
                why_not[key] = reason
            elif folder is None:
                why_not[key] = f"no {prec} folder"
            elif prec == "bf16" and not bf16:
                why_not[key] = "no bf16 on this CPU"
            elif precision == "auto" and key in report.never_auto:
                why_not[key] = report.never_auto[key]
            elif precision == "auto" and prec != "fp32" and key not in report.drops:
                why_not[key] = "accuracy not measured"
            elif precision == "auto" and prec != "fp32" and report.drops[key] > budget_db:
                why_not[key] = f"{-report.drops[key]:+.2f} dB"
            else:
                eligible.append(Candidate(name, prec, folder))
    return eligible, why_not


# -- the timing probe --------------------------------------------------------------------------
def probe_pair(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Two frames of a smooth textured scene, the second moved by a few pixels: real value ranges
    and real motion (the runtimes' speed does not depend on content beyond that)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)

    def scene(dx: float) -> np.ndarray:
        u = x + dx
        planes = [0.5 + 0.3 * np.sin(u / 17.0 + c) * np.cos(y / 29.0 - c) for c in range(3)]
        return (np.stack(planes, -1) * 255 + 0.5).astype(np.uint8)

    return scene(0.0), scene(5.0)


def probe(
    opened: Mapping[str, object],
    size: tuple[int, int],
    rounds: int = PROBE_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Milliseconds per 2x pair (flow + one frame at t=0.5) of each opened Interpolator: one
    untimed round (compiles, allocations), then up to `rounds` timed ones, every round visiting
    each candidate still in the race once, in an order rotated by one, so load from other
    processes lands on all alike; the minimum is kept."""
    frame0, frame1 = probe_pair(*size)
    names = list(opened)
    best = {name: float("inf") for name in names}
    racing = list(names)
    for index in range(rounds + 1):
        shift = index % len(racing)
        for name in racing[shift:] + racing[:shift]:
            interp = opened[name]
            began = clock()
            interp.interpolate(frame0, frame1, [0.5])  # type: ignore[attr-defined]
            if index > 0:
                best[name] = min(best[name], 1000 * (clock() - began))
        if index > 0:
            # A candidate this far behind after a timed round cannot win the next: stop paying for it.
            fastest = min(best[name] for name in racing)
            racing = [name for name in racing if best[name] <= PRUNE_RATIO * fastest]
    return best


def cache_key(facts: Mapping) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _manifest_digest(folder: Path) -> str:
    try:
        return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return "none"


def probe_facts(folders: Mapping[str, Path], size: tuple[int, int], threads: int | None) -> dict:
    height, width = padded_size(size[1], size[0])
    return {
        "version": CACHE_VERSION,
        **cpu_facts(),
        "openvino_capabilities": openvino_capabilities(),
        "threads": threads or os.cpu_count(),
        "versions": runtime_versions(),
        "models": {precision: _manifest_digest(folder) for precision, folder in sorted(folders.items())},
        "padded": [width, height],
    }


def read_cached(cache_dir: Path | None, key: str) -> dict[str, float] | None:
    if cache_dir is None:
        return None
    try:
        data = json.loads((cache_dir / f"probe-{key}.json").read_text())
        return {str(k): float(v) for k, v in data["ms"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent or damaged: measure again


def write_cached(cache_dir: Path | None, key: str, facts: Mapping, ms: Mapping[str, float]) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_dir / f"probe-{key}.json", json.dumps({"facts": facts, "ms": ms}, indent=1))
    except OSError:
        pass  # an unwritable cache costs the next job a probe, nothing else


# -- the choice --------------------------------------------------------------------------------
def rank(cands: Sequence[Candidate], timings: Mapping[str, float]) -> list[Candidate]:
    """Fastest first; ties (and unmeasured candidates) keep the order given, fp32 before others."""
    order = {c.key: i for i, c in enumerate(cands)}
    return sorted(cands, key=lambda c: (timings.get(c.key, float("inf")), order[c.key]))


def describe(
    chosen: Candidate,
    timings: Mapping[str, float],
    report: Report,
    precision: str,
    budget_db: float,
    size: tuple[int, int],
) -> str:
    """The words of the `backend:` line: which, and why in short (no commas inside the
    parentheses: the video summary keeps what precedes the first comma)."""
    drop = report.drops.get(chosen.key, 0.0 if chosen.precision == "fp32" else None)
    drop_words = "accuracy not measured" if drop is None else f"{0.0 - drop:+.2f} dB"  # never "-0.00"
    if len(timings) < 2:
        return f"{chosen.words} (CPU; {drop_words})"
    within = f" within {budget_db:g} dB" if precision == "auto" else ""
    mine = timings[chosen.key]
    speeds = " and ".join(
        f"{ms / mine:.2f}x {key.replace('/', ' ')}" for key, ms in timings.items() if key != chosen.key
    )
    return f"{chosen.words} (CPU; fastest{within} at {size[0]}x{size[1]}: {speeds}; {drop_words})"


def details(why_not: Mapping[str, str], note: str) -> str:
    """The rest of the why, for a line of its own: what was not eligible, and where speeds came from."""
    parts = [f"{key.replace('/', ' ')}: {why}" for key, why in why_not.items()]
    return "; ".join([*parts, note] if note else parts)


def select(
    folders: Mapping[str, Path],
    report: Report,
    size: tuple[int, int],
    runtime: str = "auto",
    precision: str = "auto",
    budget_db: float = DEFAULT_BUDGET_DB,
    cache_dir: Path | None = None,
    threads: int | None = None,
    runtimes: Mapping[str, tuple[bool, str]] | None = None,
    bf16: bool | None = None,
    open_interp: Callable[[Candidate], object] | None = None,
    say: Callable[[str], None] | None = None,
    label_note: str = "",
) -> Choice:
    """Pick and open the fastest eligible candidate for frames of `size` (WIDTH, HEIGHT).

    The winner comes back opened (`Choice.interpolator`), warm from the probe when one ran."""
    # OpenVINO is imported only where it may be chosen: its import starts telemetry that forks a
    # process from a thread, which crashes a host that runs threads of its own (a GStreamer element).
    wants_openvino = runtime in ("auto", "openvino")
    if runtimes is None:
        from superslomo.runtime.loader import openvino_usable

        runtimes = {"onnxruntime": (True, "")}
        if wants_openvino:
            runtimes["openvino"] = openvino_usable()
    if bf16 is None:
        bf16 = wants_openvino and "BF16" in (openvino_capabilities() or [])
    eligible, why_not = candidates(folders, runtimes, report, runtime, precision, budget_db, bf16)
    if not eligible:
        pinned = [f"--{k} {v}" for k, v in (("backend", runtime), ("precision", precision)) if v != "auto"]
        reasons = "; ".join(f"{k.replace('/', ' ')}: {v}" for k, v in why_not.items()) or "none"
        raise SloMoError(f"nothing can run {' '.join(pinned) or 'this model'} here ({reasons})")
    if open_interp is None:

        def open_interp(candidate: Candidate) -> object:
            from superslomo.runtime.interpolator import Interpolator

            return Interpolator.from_dir(candidate.folder, candidate.options(threads))

    timings: dict[str, float] = {}
    cached, note, opened = False, "", {}
    try:
        if len(eligible) > 1:
            facts = {**probe_facts(folders, size, threads), "variant": label_note}
            key = cache_key(facts)
            found = read_cached(cache_dir, key) or {}
            if all(c.key in found for c in eligible):
                timings, cached = {c.key: found[c.key] for c in eligible}, True
                note = f"speeds cached in {cache_dir}"
            else:
                opened = {c.key: open_interp(c) for c in eligible}
                if say is not None:
                    say(
                        f"measuring {', '.join(c.words for c in eligible)} at {size[0]}x{size[1]} once "
                        f"on this machine (cached in {cache_dir})"
                    )
                began = time.perf_counter()
                timings = probe(opened, size)
                # Kept beside earlier figures (another budget or pin may have measured others):
                # the same machine, model and size, so they compare.
                write_cached(cache_dir, key, facts, {**found, **timings})
                note = f"speeds measured in {time.perf_counter() - began:.0f} s, cached in {cache_dir}"
        chosen = rank(eligible, timings)[0]
        interp = opened.pop(chosen.key, None) or open_interp(chosen)
    finally:
        for other in opened.values():
            other.close()  # type: ignore[attr-defined]
    label = describe(chosen, timings, report, precision, budget_db, size)
    if label_note:
        label = f"{label[:-1]}; {label_note})"
    return Choice(chosen, label, details(why_not, note), timings, cached, interp)
