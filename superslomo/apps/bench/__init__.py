"""`slomo bench`, in parts:

- `options.py`: the backends (runtime x precision), sizes and iterations, checked.
- `folders.py`: the checkpoint, the model folders exported and quantized from it, the backends
  opened on them (a backend that cannot run is a skipped row, with why).
- `harness.py`: the timing, through the pair protocol the product runs (`Interpolator.prepare`,
  `synthesize`, `release`), interleaved across backends; memory; the PSNR column's frames.
- `tables.py`: rows (medians, IQRs, ratios, FLOPs, % of peak), the table, the JSON, the
  regression-guard lines.
- `race.py`: the whole-job race against ffmpeg's minterpolate (`--against minterpolate`).
- `accuracy.py`: the accuracy report `--precision auto` reads (`measure_precisions`).

The names below are what the CLI, the benchmarks and the tests import from `superslomo.apps.bench`.
"""

from superslomo.apps.bench.accuracy import measure_precisions
from superslomo.apps.bench.folders import Prepared, load_model, open_backends, prepare_models
from superslomo.apps.bench.harness import (
    RssSampler,
    current_rss_mb,
    graph_frames,
    lifetime_peak_rss_mb,
    psnr_against,
    reference_frames,
    run_bench,
    synthetic_pair,
    time_backends,
)
from superslomo.apps.bench.options import (
    BACKENDS,
    BASELINE,
    PSNR_REFERENCE,
    BenchOptions,
    parse_backend_list,
    parse_size_list,
)
from superslomo.apps.bench.race import (
    RACE_AGAINST,
    RaceOptions,
    count_video_frames,
    minterpolate_video,
    race_lines,
    run_race,
)
from superslomo.apps.bench.tables import (
    Samples,
    _peak_for,
    add_ratios,
    make_row,
    skipped_row,
    summarize,
    table_lines,
    target_lines,
    write_json,
)

__all__ = [
    "BACKENDS",
    "BASELINE",
    "PSNR_REFERENCE",
    "RACE_AGAINST",
    "BenchOptions",
    "Prepared",
    "RaceOptions",
    "RssSampler",
    "Samples",
    "_peak_for",
    "add_ratios",
    "count_video_frames",
    "current_rss_mb",
    "graph_frames",
    "lifetime_peak_rss_mb",
    "load_model",
    "make_row",
    "measure_precisions",
    "minterpolate_video",
    "open_backends",
    "parse_backend_list",
    "parse_size_list",
    "prepare_models",
    "psnr_against",
    "race_lines",
    "reference_frames",
    "run_bench",
    "run_race",
    "skipped_row",
    "summarize",
    "synthetic_pair",
    "table_lines",
    "target_lines",
    "time_backends",
    "write_json",
]
