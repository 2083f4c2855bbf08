"""Frame timing: which output frames fall between two source frames, and at which t.

Every mode is one rule. Output frame j is shown at j / out_rate seconds and samples the source
at j / (out_rate * slowdown) seconds (source time measured from the first decoded frame):
  --factor N          out_rate = N x source rate, slowdown 1 (same duration, smoother)
  --slowmo            out_rate = source rate,     slowdown N (N times longer)
  --fps F             out_rate = F,               slowdown 1 (or N with --slowmo)
Source times come from timestamps, so variable-rate input becomes constant-rate output with
audio still in sync. An output sample that lands within `snap` output frames of a source
frame takes that original unchanged: millisecond time bases put CFR frames a hair off the
ideal grid, and an original must never be replaced by a near-copy synthesised from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from superslomo.errors import SloMoError

# Within this fraction of an output frame interval, a sample is the source frame itself.
SNAP = Fraction(1, 8)


@dataclass(frozen=True)
class Slot:
    index: int  # output frame number
    t: float  # position between the pair's two frames, 0 = the first frame itself


def parse_rate(value: float | str | Fraction) -> Fraction:
    try:
        rate = Fraction(str(value)) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError):
        raise SloMoError(f"not a frame rate: {value!r}") from None
    if not (0 < rate <= 1000):
        raise SloMoError(f"frame rate must be in (0, 1000], got {value}")
    # 29.97 as typed means NTSC 30000/1001; keep the denominator small for the encoder's time base.
    return rate.limit_denominator(1001)


@dataclass
class Timeline:
    out_rate: Fraction
    slowdown: int = 1
    # A constant-rate source's frame interval: source times are snapped to this grid (from the
    # first frame), so originals after a gap that shifted the timestamps by part of a frame stay
    # on the output grid and are kept, not resampled. None: variable rate, times as they are.
    grid: Fraction | None = None

    def __post_init__(self) -> None:
        if self.out_rate <= 0:
            raise SloMoError(f"output frame rate must be positive, got {self.out_rate}")
        if self.slowdown < 1:
            raise SloMoError(f"slow-down must be >= 1, got {self.slowdown}")
        self._step = 1 / (self.out_rate * self.slowdown)  # source seconds per output frame
        self.next_index = 0

    @classmethod
    def for_source(cls, info, out_rate: Fraction, slowdown: int = 1) -> Timeline:
        """The job's timeline for a source (a decode.VideoInfo): a constant-rate video's frames
        are snapped to its frame grid; variable-rate ones and image sequences keep their times."""
        constant = not (info.variable_rate or info.files)
        return cls(out_rate, slowdown, grid=1 / info.rate if constant else None)

    def source_time(self, index: int) -> Fraction:
        return index * self._step

    def _first_at_or_after(self, time: Fraction) -> int:
        # The smallest j with j*step >= time - snap*step (samples that close belong to `time`).
        return max(0, math.ceil(time / self._step - SNAP))

    def slots(self, t0: Fraction, t1: Fraction) -> list[Slot]:
        """Output frames sampling [t0, t1) (snapped): consumed in order, each exactly once."""
        if t1 <= t0:
            raise SloMoError(f"source timestamps do not increase ({float(t0):.6f}s then {float(t1):.6f}s)")
        if self.grid is not None:
            t0, t1 = round(t0 / self.grid) * self.grid, round(t1 / self.grid) * self.grid
            if t1 <= t0:
                return []  # two frames on one grid point: the second one is not shown
        end = self._first_at_or_after(t1)
        result = []
        span = t1 - t0
        for j in range(max(self.next_index, self._first_at_or_after(t0)), end):
            t = (self.source_time(j) - t0) / span
            # Snapped samples just before t0 count as the first frame itself.
            result.append(Slot(j, 0.0 if t * span <= SNAP * self._step else float(t)))
        self.next_index = max(self.next_index, end)
        return result


@dataclass(frozen=True)
class FrameGrid:
    """Timeline's rule for a constant-rate source of known length, answered for any output frame
    in any order (the hosts' random access). Source frame k sits at k / in_rate; Timeline.slots
    over consecutive source frames and this grid give every output frame the same (k, t)."""

    in_rate: Fraction
    out_rate: Fraction
    frames: int  # source frames

    def __post_init__(self) -> None:
        if self.in_rate <= 0 or self.out_rate <= 0:
            raise SloMoError(f"frame rates must be positive, got {self.in_rate} and {self.out_rate}")
        if self.frames < 1:
            raise SloMoError("the source has no frames")

    @property
    def _ratio(self) -> Fraction:
        return self.out_rate / self.in_rate  # output frames per source frame

    def first(self, k: int) -> int:
        """The first output frame of source frame k's interval (Timeline._first_at_or_after)."""
        return max(0, math.ceil(k * self._ratio - SNAP))

    @property
    def count(self) -> int:
        """Output frames: the last source frame is shown for one interval, as the video job does."""
        return self.first(self.frames)

    def slot(self, j: int) -> tuple[int, float]:
        """(k, t) of output frame j: between source frames k and k+1 at t; t == 0 is frame k itself."""
        if not 0 <= j < self.count:
            raise SloMoError(f"output frame {j} is outside 0..{self.count - 1}")
        k = min(self.frames - 1, math.floor((j + SNAP) / self._ratio))
        t = j / self._ratio - k
        return k, 0.0 if t <= SNAP / self._ratio else float(t)

    def pair_times(self, k: int) -> list[tuple[int, float]]:
        """(j, t) of the output frames source frame k's pair makes with the model, in order."""
        if not 0 <= k < self.frames - 1:
            return []  # the last frame has no pair: it is held
        return [(j, t) for j in range(self.first(k), self.first(k + 1)) for _, t in [self.slot(j)] if t > 0]
