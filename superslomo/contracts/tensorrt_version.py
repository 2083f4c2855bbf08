"""TensorRT version detection and what each version supports (one code path for 10.3 .. 11.x)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from superslomo.errors import SloMoError

INSTALL_HINT = (
    "install the GPU extra: pip install 'superslomo-trt[tensorrt]' (on Jetson, TensorRT comes with JetPack)"
)


class TensorRTUnavailable(SloMoError):
    pass


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
        if not match:
            raise SloMoError(f"cannot read a TensorRT version from {text!r}")
        major, minor, patch = match.groups()
        return cls(int(major), int(minor), int(patch or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MINIMUM = TrtVersion(10, 3)  # JetPack 6
PLUGIN_MINIMUM = TrtVersion(10, 9)  # tensorrt.plugin AOT implementations became stable in 10.9


def check_supported(version: TrtVersion) -> None:
    if version < MINIMUM:
        raise TensorRTUnavailable(
            f"TensorRT {version} is too old: superslomo-trt needs {MINIMUM} or newer (JetPack 6 has 10.3), "
            "for strongly typed networks with Q/DQ INT8"
        )


def check_plugin_supported(version: TrtVersion) -> None:
    if version < PLUGIN_MINIMUM:
        raise SloMoError(
            f"this graph uses the BackWarp plugin, which needs TensorRT >= {PLUGIN_MINIMUM} "
            f"(ahead-of-time tensorrt.plugin kernels); TensorRT here is {version}. "
            "Re-export with `slomo export --warp gridsample` (TensorRT's native GridSample) and build again"
        )


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailable(f"TensorRT is not importable ({error}); {INSTALL_HINT}") from None
    return tensorrt


def tensorrt_version(trt: ModuleType | None = None) -> TrtVersion:
    module = trt or import_tensorrt()
    version = TrtVersion.parse(module.__version__)
    check_supported(version)
    return version


def versions_compatible(built: str, running: str, version_compatible: bool) -> bool:
    """Whether a plan built by TensorRT `built` loads on TensorRT `running`.

    Ordinary plans are tied to the exact version that built them; version-compatible plans
    (BuilderFlag.VERSION_COMPATIBLE, with the lean runtime inside) load on the same or a newer
    release of the same major version.
    """
    b, r = TrtVersion.parse(built), TrtVersion.parse(running)
    if version_compatible:
        return b.major == r.major and r >= b
    return b == r
