"""The model choice: which folder runs a job, on which backend with which options, resolved once.

The selection (runtime/selection.py, driven by apps/models.py) makes it; the local job opens it,
the Ray driver hands it to every actor and hashes it into its work key, so every path runs the
same graphs with the same options and makes the same frames. Frozen and picklable: a path and a
typed options object (runtime/options.py), nothing opened."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from superslomo.contracts.manifest import read_manifest
from superslomo.runtime.options import BackendOptions, OpenVinoOptions, TensorRTOptions


@dataclass(frozen=True)
class ModelChoice:
    folder: Path  # an exported ONNX folder or an engine folder
    options: BackendOptions
    precision: str  # what the frames are computed in: the folder's, or OpenVINO's bf16 over fp32 graphs
    scales: tuple[tuple[str, float], ...] = ()  # the networks' scales, from the folder's manifest
    label: str = ""  # the words of the `backend:` line

    @classmethod
    def of_folder(cls, folder: str | Path, options: BackendOptions, label: str = "") -> ModelChoice:
        """A choice pinned by hand: the folder's own precision, its manifest's scales."""
        manifest = read_manifest(Path(folder))
        precision = manifest.precision
        if isinstance(options, OpenVinoOptions) and options.precision == "bf16":
            precision = "bf16"
        return cls(Path(folder), options, precision, tuple(sorted(manifest.scales.items())), label)

    @property
    def backend(self) -> str:
        return self.options.backend

    def with_threads(self, threads: int | None) -> ModelChoice:
        """The same choice with a CPU runtime's thread count (a host's own cores): threads change
        the speed, not the frames."""
        if threads is None or isinstance(self.options, TensorRTOptions):
            return self
        return dataclasses.replace(self, options=dataclasses.replace(self.options, threads=threads))

    def open(self, max_batch: int = 4):
        """An Interpolator running this choice (not yet activated)."""
        from superslomo.runtime.interpolator import Interpolator

        return Interpolator.from_dir(self.folder, self.options, max_batch=max_batch)

    def identity(self) -> dict:
        """What makes this choice's frames differ from another's: the folder's manifest (graphs'
        checksums, precision, warp, engines' GPU), the backend and its options but the threads."""
        try:
            manifest = hashlib.sha256((self.folder / "manifest.json").read_bytes()).hexdigest()
        except OSError:
            manifest = str(self.folder)
        options = {k: v for k, v in sorted(dataclasses.asdict(self.options).items()) if k != "threads"}
        return {
            "manifest": manifest,
            "backend": self.backend,
            "options": repr(options),
            "precision": self.precision,
            "scales": [list(item) for item in self.scales],
        }
