"""`slomo gst-env`: the shell lines that let GStreamer find the `slomo` element (GST_PLUGIN_PATH)
and the element find this installation (SLOMO_GST_PYTHONPATH: the package and its site-packages,
read by gst_plugin/python/slomo_gst.py rather than PYTHONPATH, so other Python programs in the
shell keep their own). No GStreamer import: it runs anywhere the CLI runs."""

from __future__ import annotations

import glob
import re
import shlex
import sys
import sysconfig
from pathlib import Path

from superslomo.errors import SloMoError

PLUGIN_DIR = Path(__file__).resolve().parent / "gst_plugin"
INSTALL = (
    "apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "python3-gst-1.0 gstreamer1.0-python3-plugin-loader"
)
_LOADER_GLOBS = [
    f"{root}/{arch}gstreamer-1.0/libgstpython*.so"
    for root in ("/usr/lib", "/usr/local/lib", "/lib")
    for arch in ("*/", "")
]


def find_loader() -> Path | None:
    for pattern in _LOADER_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


def loader_python(loader: Path) -> str | None:
    """The Python version the plugin loader embeds (it links libpython3.X), if it says."""
    match = re.search(rb"libpython(3\.\d+)", loader.read_bytes())
    return match.group(1).decode() if match else None


def search_path() -> list[str]:
    """This installation's package root and site-packages, in the order they must be searched."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in paths:
            paths.append(path)
    return paths


def env_lines() -> list[str]:
    loader = find_loader()
    if loader is None:
        raise SloMoError(f"GStreamer's Python plugin loader is not installed: {INSTALL}")
    embedded, mine = loader_python(loader), f"{sys.version_info.major}.{sys.version_info.minor}"
    if embedded is not None and embedded != mine:
        raise SloMoError(
            f"GStreamer's Python plugin loader ({loader}) runs Python {embedded} and this installation is "
            f"Python {mine}, whose numpy and onnxruntime it cannot load: install superslomo-trt into a "
            f"Python {embedded} environment and run its slomo gst-env"
        )
    return [
        f'export GST_PLUGIN_PATH={shlex.quote(str(PLUGIN_DIR))}"${{GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}}"',
        f"export SLOMO_GST_PYTHONPATH={shlex.quote(':'.join(search_path()))}",
    ]
