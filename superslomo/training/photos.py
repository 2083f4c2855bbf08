"""Licensed photos for synthetic motion, taken from a PyPI wheel (no other download).

The scikit-image wheel ships sample images with their provenance in `skimage/data/_fetchers.py`;
the ones below are photographs or photographic textures in the public domain or under CC0. Left
out on purpose: `motorcycle_*` (from the Middlebury stereo benchmark, too close to an evaluation
set by name and source) and the microscopy and synthetic images.

    python -m superslomo.training.photos --out runs/photos
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "scikit-image==0.26.0"
# name in skimage/data -> provenance as the wheel states it
PHOTOS = {
    "astronaut.png": "NASA photograph of Eileen Collins; public domain",
    "chelsea.png": "photograph by Stefan van der Walt; CC0",
    "coffee.png": "photograph by Rachel Michetti (Pikolo Espresso Bar); CC0",
    "rocket.jpg": "SpaceX launch photograph of DSCOVR on Falcon 9; public domain",
    "hubble_deep_field.jpg": "NASA Hubble Deep Field; public domain",
    "brick.png": "CC0Textures Bricks25; CC0",
    "grass.png": "CC0Textures grass; CC0",
    "gravel.png": "CC0Textures Gravel04; CC0",
}


def extract_photos(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                folder,
                WHEEL,
            ],
            check=True,
        )
        wheel = next(Path(folder).glob("*.whl"))
        written = []
        with zipfile.ZipFile(wheel) as archive:
            for name in PHOTOS:
                target = out / name
                target.write_bytes(archive.read(f"skimage/data/{name}"))
                written.append(target)
    lines = [f"Photos from the {WHEEL} wheel (skimage/data), provenance as the wheel states it:", ""]
    lines += [f"- {name}: {source}" for name, source in PHOTOS.items()]
    (out / "SOURCES.txt").write_text("\n".join(lines) + "\n")
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"photos: {len(extract_photos(args.out))} images in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
