"""`slomo interpolate --ray`: one video interpolated on a Ray cluster, output identical to the
single run: the driver makes the local run's model choice (runtime/choice.py) once and every
actor runs it.

    driver: probe, scan packets, plan keyframe segments ──> work folder (keyed by input + options)
        │ one task per segment, on long-lived actors (each loads the model once)
        v
    actors: decode from the keyframe, interpolate, write the segment losslessly (FFV1)
        │ finished segments, in order, as they arrive
        v
    driver: decode each segment into one VideoWriter (the user's codec, crf, preset; the audio)

A killed actor is restarted by Ray and its segment retried (max_restarts / max_task_retries); a
killed driver leaves the finished segments in the work folder, and the same command reuses
them. The output is written to a temporary name and renamed, as every command here does.

Inputs, the work folder and the model must be at the same path on every node (shared storage);
see README "Across machines with Ray".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from superslomo.contracts.manifest import ManifestError, read_manifest
from superslomo.errors import SloMoError
from superslomo.video.pipeline import JobPlan, Options, Summary, claim_output, plan_job
from superslomo.video.publish import OutputLock
from superslomo.video.segments import (
    SEGMENT_SUFFIX,
    Plan,
    SegmentJob,
    SegmentResult,
    append_segment,
    plan_segments,
    render_segment,
    segment_jobs,
)

RAY_EXTRA = "pip install 'superslomo-trt[ray]'"
WORK_SUFFIX = ".ray-work"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SloMoError(f"--ray needs Ray on this machine and every node: {RAY_EXTRA}") from None
    return ray


@dataclass
class RayOptions:
    address: str = "local"  # "local": a private cluster on this machine; else a cluster's address
    workers: int | None = None  # actors; default one per GPU, or one per node on CPUs
    gpus_per_worker: float | None = None  # default 1 for TensorRT models on a cluster with GPUs
    cpus_per_worker: float = 1.0
    work_dir: Path | None = None  # default: `.<output name>.ray-work` beside the output
    segment_frames: int | None = None  # default: about three segments per worker
    max_retries: int = 3  # restarts of a dead actor, and retries of its segment
    keep_work: bool = False  # keep the segments after a successful join
    local_cpus: int | None = None  # "local" only: CPUs of the private cluster
    object_store_mb: int | None = None  # "local" only
    threads: int | None = None  # onnxruntime threads per actor (default: every core of its node)


class SegmentWorker:
    """One long-lived actor: the model is loaded once, then segments are rendered one by one.

    Loading errors are kept and reported by ready() rather than raised from __init__: Ray would
    turn them into a dead actor and a traceback, where the driver wants one line per cause."""

    def __init__(self, model, backend: str, threads: int | None = None, factory=None) -> None:
        """`model`: the driver's ModelChoice, or (a folder the driver cannot read) its path."""
        import socket

        self.node = socket.gethostname()
        self.error: str | None = None
        self.interpolator = None
        self.label = backend
        try:
            if factory is not None:
                self.interpolator = factory()
            else:
                self.interpolator = _open_model(model, backend, threads)
            backend_obj = getattr(self.interpolator, "backend", None)
            self.label = getattr(backend_obj, "name", backend)
        except SloMoError as error:
            self.error = str(error)
        except ImportError as error:
            self.error = (
                f"cannot run the model: {error} (install superslomo-trt with its extras on every node)"
            )

    def ready(self) -> dict:
        return {"node": self.node, "pid": os.getpid(), "error": self.error, "backend": self.label}

    def render(self, job: SegmentJob, work_dir: str, run: str = "") -> dict:
        """`run`: the driver's run id, in the names of this segment's temporary files."""
        if self.error is not None:
            raise SloMoError(self.error)
        work = Path(work_dir)
        if not work.is_dir():
            raise SloMoError(
                f"the work folder {work} is not visible on node {self.node}: put it on storage every "
                "node mounts at the same path (--work-dir)"
            )
        if not Path(job.info.path).is_file():
            raise SloMoError(
                f"the input {job.info.path} is not visible on node {self.node}: put inputs on storage "
                "every node mounts at the same path"
            )
        began = time.perf_counter()
        result = render_segment(job, self.interpolator, segment_path(work, job.segment.index), run)
        record = {
            "segment": _segment_key(job),
            "result": result.to_json(),
            "bytes": segment_path(work, job.segment.index).stat().st_size,
            "node": self.node,
            "pid": os.getpid(),
            "seconds": time.perf_counter() - began,
        }
        _write_json(record_path(work, job.segment.index), record, run)
        return record


def _open_model(model, backend: str, threads: int | None):
    from superslomo.runtime.choice import ModelChoice

    folder = model.folder if isinstance(model, ModelChoice) else Path(model)
    if not folder.exists():
        raise SloMoError(f"model not found: {folder} (every node needs it at the same path)")
    if folder.is_file():
        raise SloMoError(f"{folder} is a checkpoint; Ray workers run an exported folder (slomo export)")
    if not isinstance(model, ModelChoice):
        model = _choice_for(folder, backend)
    return model.with_threads(threads).open()


def _choice_for(folder: Path, backend: str):
    """The choice of a folder given by path and backend name (an app calling interpolate_on_ray
    itself): its own precision, "auto" as the loader opens it."""
    from superslomo.runtime.choice import ModelChoice
    from superslomo.runtime.options import default_options, options_for

    options = options_for(backend) or default_options(read_manifest(folder).kind)
    return ModelChoice.of_folder(folder, options)


def segment_path(work: Path, index: int) -> Path:
    return work / f"seg-{index:05d}{SEGMENT_SUFFIX}"


def record_path(work: Path, index: int) -> Path:
    return work / f"seg-{index:05d}.json"


def _segment_key(job: SegmentJob) -> list:
    seg = job.segment
    return [seg.index, seg.first, seg.frames, str(seg.start)]


def _write_json(path: Path, data: dict, run: str = "") -> None:
    temp = path.with_name(f".{path.name}.partial-{f'{run}-' if run else ''}{os.getpid()}")
    temp.write_text(json.dumps(data))
    os.replace(temp, path)


def _finished(work: Path, job: SegmentJob) -> dict | None:
    """The record of a segment an earlier run finished, if its file is whole and it is this one."""
    try:
        record = json.loads(record_path(work, job.segment.index).read_text())
        size = segment_path(work, job.segment.index).stat().st_size
    except (OSError, ValueError):
        return None
    if record.get("segment") != _segment_key(job) or record.get("bytes") != size:
        return None
    return record


def _model_identity(model, backend: str) -> list:
    """What makes a model's frames differ: the choice's identity (its manifest, backend, options,
    precision); a folder this machine cannot read counts by its path and backend name."""
    from superslomo.runtime.choice import ModelChoice

    if isinstance(model, ModelChoice):
        return [model.identity()]
    return [str(model), backend]


def work_key(
    input_path: Path,
    options: Options,
    out_rate: Fraction,
    slowdown: int,
    pix_fmt: str,
    model_id: list,
    plan: Plan,
) -> str:
    """Same input file, same frame-making options, same model, same plan: same segments. The final
    encoder's settings (codec quality, audio) are not in it: they only change the join."""
    from superslomo import __version__

    stat = input_path.stat()
    facts = {
        "input": [str(input_path.resolve()), stat.st_size, stat.st_mtime_ns],
        "frames": [options.factor, options.slowmo, str(options.fps), options.scene_threshold],
        "span": [options.start, options.duration],
        "rate": [str(out_rate), slowdown, pix_fmt],
        "model": model_id,
        "plan": plan.describe(),
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(output: Path) -> None:
    """Temporary outputs of runs that were killed (their pid is gone); called under the lock."""
    for path in output.parent.glob(f".{output.stem}.partial*{output.suffix}"):
        digits = path.name[len(f".{output.stem}.partial") : -len(output.suffix) or None]
        if digits.isdigit() and not _pid_alive(int(digits)):
            with contextlib.suppress(OSError):
                path.unlink()


RUN_LOCK = ".run-{}.lock"


class RunClaim:
    """This run's id in a work folder, held by an flock on `.run-ID.lock` for as long as the run
    lives: its workers' temporary files are named with the id, so a run sharing the folder (a
    shared --work-dir) removes only its own, and those of runs whose lock nobody holds any more
    (killed drivers; their actors died with them)."""

    def __init__(self, work: Path) -> None:
        import fcntl
        import uuid

        self.work = work
        self.id = uuid.uuid4().hex[:12]
        self.path = work / RUN_LOCK.format(self.id)
        try:
            self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            raise SloMoError(f"cannot claim the work folder {work}: {error.strerror}") from None

    def remove_partials(self) -> None:
        """This run's temporary files."""
        _remove_partials_of(self.work, self.id)

    def remove_stale(self) -> None:
        """Temporary files of runs that are gone (their lock is free)."""
        import fcntl

        for lock in self.work.glob(RUN_LOCK.format("*")):
            other = lock.name[len(".run-") : -len(".lock")]
            if other == self.id:
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # alive: its files are its own
            finally:
                os.close(fd)
            _remove_partials_of(self.work, other)
            with contextlib.suppress(OSError):
                lock.unlink()

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = -1


def _remove_partials_of(work: Path, run: str) -> None:
    for path in work.glob(f".*.partial-{run}-*"):
        with contextlib.suppress(OSError):
            path.unlink()


def _remove_work(work: Path) -> None:
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.parent.rmdir()  # only when no other job's work is in it


def _connect(ray, ray_options: RayOptions) -> bool:
    """Join or start the cluster; True when this call started it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    import logging

    kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    if ray_options.address == "local":
        # A private cluster on this machine only: Ray 2.60's token auth would refuse this driver
        # unless the token were set up, and nothing else joins it.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if ray_options.local_cpus is not None:
            kwargs["num_cpus"] = ray_options.local_cpus
        if ray_options.object_store_mb is not None:
            kwargs["object_store_memory"] = ray_options.object_store_mb * 1024 * 1024
    try:
        ray.init(address=ray_options.address, **kwargs)
    except Exception as error:  # noqa: BLE001 - Ray raises many kinds; all mean "no cluster"
        text = _first_line(error)
        hint = ""
        if "auth" in text.lower() or "token" in text.lower():
            hint = " (the cluster wants its auth token: see README, Across machines with Ray)"
        raise SloMoError(f"cannot reach the Ray cluster at {ray_options.address!r}: {text}{hint}") from None
    return True


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def worker_error(error: BaseException) -> SloMoError:
    """One line for an error a worker raised or died of."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, SloMoError):
        return SloMoError(str(cause))
    text = str(error)
    marker = "No module named "
    if marker in text:
        module = text.split(marker, 1)[1].split()[0].strip("'\"")
        if module.split(".")[0] == "superslomo":
            return SloMoError(
                "a Ray worker cannot import superslomo: install superslomo-trt on every node, or ship "
                "it with runtime_env (see README, Across machines with Ray)"
            )
        return SloMoError(f"a Ray worker lacks the Python module {module!r}: install it on every node")
    if cause is not None:
        return SloMoError(f"a Ray worker failed: {type(cause).__name__}: {_first_line(cause)}")
    return SloMoError(f"a Ray worker failed: {type(error).__name__}: {_first_line(error)}")


def _resources(ray, ray_options: RayOptions, model, backend: str) -> tuple[int, dict]:
    from superslomo.runtime.choice import ModelChoice

    cluster = ray.cluster_resources()
    gpus = ray_options.gpus_per_worker
    if gpus is None:
        if isinstance(model, ModelChoice):
            backend = model.backend
        wants_gpu = backend == "tensorrt"
        gpus = 1.0 if wants_gpu and cluster.get("GPU", 0) >= 1 else 0.0
    workers = ray_options.workers
    if workers is None:
        if gpus:
            workers = max(1, int(cluster.get("GPU", 0) // gpus))
        else:
            # onnxruntime uses every core of its node: one actor per node.
            workers = max(1, len([n for n in ray.nodes() if n.get("Alive")]))
    options = {
        "num_cpus": ray_options.cpus_per_worker,
        "num_gpus": gpus,
        "max_restarts": ray_options.max_retries,
        "max_task_retries": ray_options.max_retries,
        "scheduling_strategy": "SPREAD",
    }
    return workers, options


def check_paths(input_path: str | os.PathLike, output_path: str | os.PathLike) -> None:
    """What --ray refuses that a local run takes (checked before a model is resolved)."""
    from superslomo.video.sequence import is_sequence_input, is_sequence_output

    if is_sequence_input(input_path) or is_sequence_output(output_path):
        raise SloMoError(
            "--ray splits a video file into keyframe segments; for image sequences run without it"
        )


def interpolate_on_ray(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model,
    backend: str = "auto",
    options: Options | None = None,
    ray_options: RayOptions | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    claim: OutputLock | None = None,
    interpolator_factory: Callable[[], object] | None = None,
) -> Summary:
    """interpolate_video, on a Ray cluster: the same output for the same backend. `plan_job`,
    then `run_on_ray` (see there for `model` and `interpolator_factory`).
    Raises SloMoError (one line) for bad input, an unreachable cluster or a failed worker."""
    check_paths(input_path, output_path)
    plan = plan_job(input_path, output_path, options)
    return run_on_ray(plan, model, backend, ray_options, progress, say, claim, interpolator_factory)


def run_on_ray(
    plan: JobPlan,
    model,
    backend: str = "auto",
    ray_options: RayOptions | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    claim: OutputLock | None = None,
    interpolator_factory: Callable[[], object] | None = None,
) -> Summary:
    """Run a planned job (pipeline.plan_job) on a Ray cluster: its rates, pixel format and audio
    decide the segments and the join; nothing is planned again.

    `model`: the model choice (runtime/choice.py; apps/models.choose_model makes the one a local
    run makes), or an exported folder (ONNX graphs or TensorRT engines) opened with `backend`;
    either at the same path on every node. `interpolator_factory`: build each worker's
    interpolator yourself instead (called once per actor, on its node; `model` then only names
    it in the work folder's key). `claim`: the output's lock, when the caller took it."""
    ray_options = ray_options or RayOptions()
    say = say or (lambda text: print(text, file=sys.stderr))
    from superslomo.runtime.choice import ModelChoice

    check_paths(plan.input, plan.output)
    if not isinstance(model, ModelChoice):
        model = Path(model)
        with contextlib.suppress(ManifestError, SloMoError):
            model = _choice_for(model, backend)  # else the workers say why they cannot open it
    lock = claim if claim is not None else claim_output(plan.output)
    try:
        plan.check_output()  # again, now that no other run can write it
        _remove_stale_temps(plan.output)
        return _run(plan, model, backend, ray_options, progress, say, interpolator_factory)
    finally:
        if claim is None:
            lock.release()


def _run(
    job: JobPlan,
    model,
    backend: str,
    ray_options: RayOptions,
    progress: bool | None,
    say: Callable[[str], None],
    factory,
) -> Summary:
    began = time.perf_counter()
    input_path, output_path, options = job.input, job.output, job.options
    if progress is None:
        progress = sys.stderr.isatty()
    ray = _import_ray()
    started = _connect(ray, ray_options)
    try:
        workers, actor_options = _resources(ray, ray_options, model, backend)
        plan = plan_segments(job.info, options.start, options.duration, workers, ray_options.segment_frames)
        model_id = _model_identity(model, backend)
        key = work_key(input_path, options, job.out_rate, job.slowdown, job.pix_fmt, model_id, plan)
        root = ray_options.work_dir or output_path.parent / f".{output_path.name}{WORK_SUFFIX}"
        work = Path(root).resolve() / key
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SloMoError(f"cannot create the work folder {work}: {error.strerror}") from None
        claim = RunClaim(work)
        claim.remove_stale()
        jobs = segment_jobs(job, plan)
        done = {seg.segment.index: record for seg in jobs if (record := _finished(work, seg)) is not None}
        label = (getattr(model, "label", "") or getattr(model, "backend", backend)).removesuffix(
            ", picked by auto"
        )
        summary = job.summary(label)
        if plan.note:
            summary.notes.append(plan.note)
        if done:
            say(f"ray: reusing {len(done)} of {len(jobs)} finished segments from {work}")
        records = _records_in_order(
            ray,
            jobs,
            done,
            work,
            (model, backend, ray_options.threads, factory),
            workers,
            actor_options,
            claim.id,
        )
        try:
            _join(job, records, work, summary, say, progress)
        except BaseException:
            # The actors stop first: one still rendering would write a file after the clean-up.
            records.close()
            # Finished segments stay for the next run; a folder with none goes.
            claim.remove_partials()
            claim.release()
            if not any(work.glob("seg-*.json")):
                _remove_work(work)
            raise
        finally:
            records.close()  # stops the actors, whatever happened
            claim.release()
    finally:
        if started:
            ray.shutdown()
    if not ray_options.keep_work:
        _remove_work(work)
    summary.seconds = time.perf_counter() - began
    summary.notes.append(f"ray: {len(jobs)} segments, {workers} workers, {len(done)} reused")
    return summary


# How long actors may take to start and load their model before the driver gives up: a cluster
# without the resources they ask for (a GPU, say) would otherwise keep them pending for ever.
READY_TIMEOUT_S = 600


def _records_in_order(
    ray, jobs, done, work: Path, worker_args: tuple, workers: int, actor_options: dict, run: str = ""
):
    """Each segment's record, in segment order, as soon as it and those before it are finished.
    Segments are handed out in order, one at a time per actor, so the join can start early."""
    ready = dict(done)
    queue = [job for job in jobs if job.segment.index not in done]
    actors: list = []
    in_flight: dict = {}
    try:
        if queue:
            worker_class = ray.remote(SegmentWorker).options(**actor_options)
            actors = [worker_class.remote(*worker_args) for _ in range(min(workers, len(queue)))]
            try:
                states = ray.get([actor.ready.remote() for actor in actors], timeout=READY_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise SloMoError(
                    f"no Ray worker started within {READY_TIMEOUT_S} s: the cluster lacks the resources "
                    f"each one asks for ({actor_options['num_cpus']:g} CPU, "
                    f"{actor_options['num_gpus']:g} GPU)"
                ) from None
            except ray.exceptions.RayError as error:
                raise worker_error(error) from None
            for state in states:
                if state["error"]:
                    raise SloMoError(f"Ray worker on {state['node']}: {state['error']}")
            for actor in actors:
                if queue:
                    job = queue.pop(0)
                    in_flight[actor.render.remote(job, str(work), run)] = (actor, job)
        for job in jobs:
            index = job.segment.index
            while index not in ready:
                finished, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in finished:
                    actor, ran = in_flight.pop(ref)
                    try:
                        ready[ran.segment.index] = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        raise worker_error(error) from None
                    if queue:
                        following = queue.pop(0)
                        in_flight[actor.render.remote(following, str(work), run)] = (actor, following)
            yield job, ready.pop(index)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)


def _join(
    job: JobPlan,
    records,
    work: Path,
    summary: Summary,
    say: Callable[[str], None],
    progress: bool,
) -> None:
    """Decode the segments in order into one VideoWriter: the user's encoder, the source's audio
    by the plan (the rules of a single run)."""
    from superslomo.video.encode import VideoWriter

    options = job.options
    job.announce(summary, say)
    writer = audio = None
    finished = False
    try:
        for segment, record in records:
            result = SegmentResult.from_json(record["result"])
            if writer is None:
                origin = segment.origin if segment.origin is not None else result.origin
                audio = job.open_audio()
                if audio is not None:
                    audio.origin = job.info.start_time + origin
                writer = VideoWriter(
                    job.output,
                    job.info,
                    job.out_rate,
                    options.codec,
                    options.crf,
                    options.preset,
                    audio,
                    overwrite=options.overwrite,
                    keep_on_conflict=True,  # a cluster's work is not thrown away for a name
                    pix_fmt=job.pix_fmt,
                )
                if audio is not None:
                    summary.audio = writer.audio_mode or "none"
            summary.frames_out += append_segment(
                writer, segment_path(work, result.index), result, job.pix_fmt
            )
            summary.frames_in += result.frames_in
            summary.new_frames += result.new_frames
            summary.held_frames += result.held_frames
            summary.cuts += result.cuts
            if progress:
                say(
                    f"ray: segment {result.index + 1} joined ({result.frames_out} frames, "
                    f"made on {record['node']} in {record['seconds']:.1f} s)"
                )
        writer.finish(audio_end=Fraction(writer.count) / job.out_rate if audio is not None else None)
        finished = True
    finally:
        if writer is not None and not finished:
            writer.abort()
        if audio is not None:
            audio.close()
