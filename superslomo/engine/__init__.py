"""ONNX -> TensorRT plans: strongly typed builds, profiles, timing cache, BackWarp plugin, manifest.

Importing this package needs neither TensorRT nor Triton; they are imported by the functions that
use them, with a message naming the extra to install.
"""

from superslomo.contracts.shapes import Profile, Shape, choose_profile, parse_profiles, parse_shape

__all__ = ["Profile", "Shape", "choose_profile", "parse_profiles", "parse_shape", "build_engines"]


def build_engines(*args, **kwargs):  # type: ignore[no-untyped-def]
    from superslomo.engine.builder import build_engines as build

    return build(*args, **kwargs)
