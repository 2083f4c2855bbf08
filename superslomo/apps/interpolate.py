"""`slomo interpolate`'s job: where it runs (this machine, a Triton server, a Ray cluster), the
model opened there, the video job. The CLI parses options into `Options` and `Where` and calls
`interpolate`; an app can do the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from superslomo.errors import SloMoError
from superslomo.video.pipeline import Options, Summary, claim_output, plan_job, run_job


@dataclass(frozen=True)
class Where:
    """The model and where it runs. `server`: a Triton server's URL (it holds the model);
    `ray`: a Ray cluster's address or "local"; neither: this machine."""

    model: Path | None = None
    backend: str = "auto"
    precision: str = "auto"
    server: str | None = None
    protocol: str | None = None
    server_model: str = "slomo"
    timeout: float = 60.0
    ray: str | None = None
    ray_workers: int | None = None
    work_dir: Path | None = None


def open_server(where: Where) -> tuple[object, str]:
    """An Interpolator on the server's pair model for `--server`, and the words that say where
    it runs."""
    from superslomo.serving.triton_client import TritonInterpolator

    if where.model is not None or where.backend != "auto" or where.precision != "auto":
        raise SloMoError(
            "--server runs the model the server holds, at the precision it was given: "
            "drop --model, --backend and --precision"
        )
    interp = TritonInterpolator(
        where.server, protocol=where.protocol, model=where.server_model, timeout=where.timeout
    )
    return interp, interp.backend.describe()


def interpolate(
    input_path: Path, output_path: Path, options: Options, where: Where, say: Callable[[str], None]
) -> Summary:
    """Plan the job once (bad input is refused before any model loads), claim the output, run
    the plan here or on Ray; `say` gets the `backend:` line and notes (stderr in the CLI)."""
    plan = plan_job(input_path, output_path, options)
    info = plan.info
    if where.ray is not None:
        from superslomo.apps.models import choose_model
        from superslomo.serving.ray_batch import RayOptions, check_paths, run_on_ray

        check_paths(input_path, output_path)
        if where.server is not None or where.backend == "torch":
            raise SloMoError(
                "--ray runs exported models on its workers; it takes neither --server nor --backend torch"
            )
        if options.dedup:
            raise SloMoError("--dedup runs on this machine or with --server, not with --ray")
        if where.ray_workers is not None and where.ray_workers < 1:
            raise SloMoError(f"--ray-workers must be at least 1, got {where.ray_workers}")
        with claim_output(output_path) as claim:
            # The choice a local run makes (measured on this machine, at the job's size), made
            # once here and run by every actor: the same frames as the local run.
            choice, interp, label = choose_model(
                where.model,
                where.backend,
                where.precision,
                size=(info.width, info.height),
                say=lambda line: say(f"note: {line}"),
            )
            interp.close()  # type: ignore[attr-defined]
            say(f"backend: {label}")
            return run_on_ray(
                plan,
                choice,
                ray_options=RayOptions(address=where.ray, workers=where.ray_workers, work_dir=where.work_dir),
                claim=claim,
            )
    with claim_output(output_path) as claim:  # a second run on the same output fails before loading
        from superslomo.apps.models import open_model

        if where.server is not None:
            interp, label = open_server(where)
        else:
            interp, label = open_model(
                where.model,
                where.backend,
                where.precision,
                size=(info.width, info.height),
                say=lambda line: say(f"note: {line}"),
            )
        say(f"backend: {label}")
        with interp:
            return run_job(plan, interp, label.removesuffix(", picked by auto"), claim=claim)
