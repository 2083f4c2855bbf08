#!/usr/bin/env python3
"""Type-check everything that touches TensorRT against `tensorrt-stubs`, without TensorRT.

TensorRT cannot be installed without a GPU toolchain, so mypy is the only check that the engine
and TensorRT-runtime modules call methods that exist with the right arguments. The stubs package
needs three repairs before mypy accepts it (found in a trial, TensorRT issue 9 of this project):
  * it is installed with --no-deps (it depends on TensorRT itself);
  * its .pyi files land straight in site-packages without py.typed, so mypy ignores them: they
    are copied into .stubs/ and passed as MYPYPATH;
  * syntax errors: parameters named `in`, `add_scale_nd` with a non-default parameter after
    defaults, and an import of `tensorrt_libs`.

Exit status: mypy's (0 clean, 1 errors); 3 when the stubs cannot be obtained (no network).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / ".stubs"
STUBS_SPEC = "tensorrt-stubs>=10.3,<12"
CHECKED = [
    "superslomo/engine",
    "superslomo/runtime/tensorrt_backend.py",
]
NO_STUBS = 3


def _patch(text: str) -> str:
    # `in` is a keyword: rename the parameter (stubs only; call sites use positional arguments).
    text = re.sub(r"(?<=[(,\s])in(?=\s*:)", "in_", text)
    text = re.sub(r"^\s*import tensorrt_libs as tensorrt_libs\s*$", "", text, flags=re.M)
    text = re.sub(r"^(\s*)from tensorrt_libs import .*$", r"\1pass", text, flags=re.M)
    # A required parameter after defaulted ones: make it keyword-only, as the binding accepts it.
    text = re.sub(
        r"def add_scale_nd\(self, input: ITensor, mode: ScaleMode, shift: Weights = None, "
        r"scale: Weights = None, power: Weights = None, channel_axis: int\)",
        "def add_scale_nd(self, input: ITensor, mode: ScaleMode, shift: Weights = None, "
        "scale: Weights = None, power: Weights = None, *, channel_axis: int)",
        text,
    )
    return text


def install_stubs(dest: Path = STUBS) -> Path:
    """Download the stubs wheel (no deps), unpack, patch, into `dest`; reuse it when present."""
    marker = dest / "tensorrt" / "__init__.pyi"
    if marker.is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, STUBS_SPEC]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("tensorrt_stubs-*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {STUBS_SPEC}: {result.stderr.strip()[-300:]}")
        staging = Path(tmp) / "stubs"
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.endswith(".pyi") and member.split("/")[0] in ("tensorrt", "tensorrt_bindings"):
                    wheel.extract(member, staging)
        for pyi in staging.rglob("*.pyi"):
            pyi.write_text(_patch(pyi.read_text()))
        # tensorrt.plugin is pure Python in the real package and absent from the stubs: turning
        # `tensorrt` into a stub *package* lets mypy treat the missing submodule as untyped.
        (staging / "tensorrt" / "py.typed").write_text("partial\n")
        staging_final = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
        shutil.rmtree(staging_final, ignore_errors=True)
        shutil.copytree(staging, staging_final)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging_final, dest)
    return dest


MYPY_CONFIG = """\
[mypy]
python_version = 3.11
ignore_missing_imports = True
check_untyped_defs = True
follow_imports = silent
warn_unused_ignores = False
# The generated stubs have their own errors (a class named `bool` shadows the builtin, ...):
# they are the reference, not the code under test.
[mypy-tensorrt.*]
ignore_errors = True
[mypy-tensorrt_bindings.*]
ignore_errors = True
"""


def run_mypy(stubs: Path, paths: list[str] = CHECKED) -> subprocess.CompletedProcess[str]:
    config = stubs / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(config),
        "--no-error-summary",
        "--cache-dir",
        str(ROOT / ".mypy_cache" / "tensorrt"),
        *paths,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or CHECKED
    try:
        stubs = install_stubs()
    except RuntimeError as error:
        print(f"typecheck_tensorrt: {error}", file=sys.stderr)
        return NO_STUBS
    result = run_mypy(stubs, paths)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode == 0:
        print(f"typecheck_tensorrt: {', '.join(paths)} clean against tensorrt-stubs")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
