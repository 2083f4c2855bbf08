"""Image sequences for `slomo interpolate`: a folder of frames or a printf pattern in
(`frames/%04d.png`), a pattern or a folder out. They go through the same pipeline as video: a
sequence in is a VideoInfo whose frames are files (decoded here, timed at i / rate); a sequence
out is a writer with the video writer's interface. Sequences carry no audio.

The rule for `-o`: a name with a printf field (`out/%05d.png`) is that sequence; a folder (one
that exists, or a name without a suffix) gets `%06d.png` in it. Output frames are numbered from 1,
as FFmpeg numbers them.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.color import to_rgb
from superslomo.video.decode import Decoded, VideoInfo, color_model
from superslomo.video.frames import IMAGE_SUFFIXES, list_frame_files, read_image
from superslomo.video.publish import OVERWRITE_HINT, OutputLock, interrupts_deferred

DEFAULT_RATE = Fraction(25)  # FFmpeg's image2 default
FOLDER_PATTERN = "%06d.png"
FIRST_NUMBER = 1
# What each output suffix is saved with: lossless where the format allows, so originals come
# back bit-exact.
_SAVE_OPTIONS = {
    ".png": {"compress_level": 3},
    ".tif": {},
    ".tiff": {},
    ".bmp": {},
    ".ppm": {},
    ".webp": {"lossless": True},
    ".jpg": {"quality": 95},
    ".jpeg": {"quality": 95},
}
_FIELD = re.compile(r"%(0(\d+))?d")
LOCK_NAME = ".slomo.lock"


def has_pattern(path: str | os.PathLike) -> bool:
    return bool(_FIELD.search(Path(path).name))


def is_sequence_input(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() or has_pattern(path)


def is_sequence_output(path: str | os.PathLike) -> bool:
    path = Path(path)
    return has_pattern(path) or path.is_dir() or (path.suffix == "" and str(path) not in ("", "."))


def _split(pattern: Path) -> tuple[str, int, str]:
    """(prefix, digits or 0 for any, suffix) of a file-name pattern with one %d / %0Nd field."""
    fields = list(_FIELD.finditer(pattern.name))
    if len(fields) != 1 or "%" in _FIELD.sub("", pattern.name):
        raise SloMoError(f"{pattern}: a sequence pattern needs exactly one %d or %0Nd field (and no other %)")
    field = fields[0]
    return pattern.name[: field.start()], int(field.group(2) or 0), pattern.name[field.end() :]


def _numbered(folder: Path, prefix: str, digits: int, suffix: str) -> dict[int, Path]:
    number = rf"\d{{{digits}}}" if digits else r"\d+"
    regex = re.compile(re.escape(prefix) + f"({number})" + re.escape(suffix) + "$")
    found = {}
    for path in folder.iterdir():
        match = regex.match(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return found


def _contiguous(found: dict[int, Path], where: str) -> list[Path]:
    numbers = sorted(found)
    for a, b in itertools.pairwise(numbers):
        if b != a + 1:
            missing = f"{a + 1}" if b == a + 2 else f"{a + 1} to {b - 1}"
            raise SloMoError(
                f"{where}: frame {missing} is missing (after {found[a].name}); "
                "a sequence must be numbered without gaps"
            )
    return [found[n] for n in numbers]


def list_sequence(path: str | os.PathLike) -> list[Path]:
    """The frame files of a folder or pattern, in order. A pattern's frames, and a folder's when
    its names are all one prefix + number + suffix, are ordered by number (frame2 before
    frame10) and must have no gaps; other folders are taken in name order."""
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise SloMoError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        numbered = [re.fullmatch(r"(.*?)(\d+)(\.[^.]+)", f.name) for f in files]
        if all(numbered) and len({(m.group(1), m.group(3)) for m in numbered}) == 1:
            prefix, suffix = numbered[0].group(1), numbered[0].group(3)
            return _contiguous(_numbered(path, prefix, 0, suffix), str(path))
        return files
    prefix, digits, suffix = _split(path)
    folder = path.parent
    if not folder.is_dir():
        raise SloMoError(f"input not found: {folder} is not a folder")
    if suffix.lower() not in IMAGE_SUFFIXES:
        raise SloMoError(f"{path}: frames must be images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    found = _numbered(folder, prefix, digits, suffix)
    if not found:
        raise SloMoError(f"input not found: no files match {path}")
    return _contiguous(found, str(path))


def probe_sequence(path: str | os.PathLike, rate: Fraction, max_size: tuple[int, int]) -> VideoInfo:
    """A sequence as a VideoInfo: the first frame's size, `rate`, no audio. Sizes of the other
    frames are checked as they are read (reading them all here would double the work)."""
    path = Path(path)
    files = list_sequence(path)
    first = read_image(files[0])
    height, width = first.shape[:2]
    max_w, max_h = max_size
    if width * height > max_w * max_h or max(width, height) > max(max_w, max_h):
        raise SloMoError(
            f"{files[0]} is {width}x{height}, larger than the limit {max_w}x{max_h} "
            "(raise it with --max-size)"
        )
    # Frames are sRGB pictures: say BT.709 in a video made from them, rather than leave players
    # to guess the matrix from the frame size.
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        rate=rate,
        time_base=1 / rate,
        start_time=Fraction(0),
        pix_fmt="rgb24",
        colorspace=1,
        color_range=1,
        color_primaries=1,
        color_trc=1,
        frames=len(files),
        duration=float(len(files) / rate),
        has_audio=False,
        files=tuple(files),
    )


def sequence_frames(info: VideoInfo, start: float = 0.0, duration: float | None = None) -> Iterator[Decoded]:
    """The frames of a sequence within the segment, frame i at i / rate seconds; each one is its
    own original (`native`), so it is written back untouched."""
    interval = 1 / info.rate
    begin = Fraction(start).limit_denominator(1_000_000)
    end = begin + Fraction(duration).limit_denominator(1_000_000) if duration is not None else None
    for index, file in enumerate(info.files):
        when = index * interval
        if when < begin - interval / 4:
            continue
        if end is not None and when >= end - interval / 4:
            break
        image = read_image(file)
        if image.shape[:2] != (info.height, info.width):
            raise SloMoError(
                f"{file} is {image.shape[1]}x{image.shape[0]}, but {info.files[0].name} is "
                f"{info.width}x{info.height}: the frames of a sequence must be one size"
            )
        yield Decoded(image, when, image)


def _place(source: Path, target: Path) -> None:
    """`source` at `target` by a hard link, which fails if the target exists (never a silent
    replace); where the file system has no links, a check and a rename."""
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        if target.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.rename(source, target)


def output_pattern(output: str | os.PathLike) -> Path:
    """The output as folder / file-name pattern (see the module's rule)."""
    output = Path(output)
    if has_pattern(output):
        pattern = output
    else:
        pattern = output / FOLDER_PATTERN
    _split(pattern)
    if pattern.suffix.lower() not in _SAVE_OPTIONS:
        raise SloMoError(f"{output}: an image sequence is written as {', '.join(sorted(_SAVE_OPTIONS))}")
    return pattern


def check_sequence_output(output: str | os.PathLike, input_path: Path, overwrite: bool) -> Path:
    pattern = output_pattern(output)
    folder = pattern.parent
    home = folder.parent if str(folder) not in ("", ".") else Path(".")
    if not folder.is_dir() and not home.is_dir():
        raise SloMoError(f"output folder does not exist: {home}")
    if folder.exists() and not folder.is_dir():
        raise SloMoError(f"output folder {folder} is a file")
    sources = [input_path] if input_path.is_dir() else [input_path.parent]
    if folder.is_dir() and any(folder.resolve() == s.resolve() for s in sources if s.is_dir()):
        raise SloMoError(f"output folder is the input folder ({folder}); choose another")
    writable = folder if folder.is_dir() else home
    if not os.access(writable, os.W_OK | os.X_OK):
        raise SloMoError(f"cannot write to {writable} (permission denied)")
    if not overwrite and folder.is_dir():
        prefix, digits, suffix = _split(pattern)
        existing = _numbered(folder, prefix, digits, suffix)
        if existing:
            raise SloMoError(
                f"{pattern} exists ({len(existing)} frames, e.g. {min(existing.items())[1].name}); "
                f"{OVERWRITE_HINT}"
            )
    return pattern


def claim_sequence(output: str | os.PathLike) -> OutputLock:
    """The lock for a sequence output: inside its folder, which is made here if needed (and
    removed again if the run publishes nothing), so that every run on it sees the same lock."""
    folder = output_pattern(output).parent
    made = None
    if not folder.is_dir():
        try:
            folder.mkdir()
            made = folder
        except FileExistsError:
            pass  # another run made it just now: the lock inside decides
        except OSError as error:
            raise SloMoError(f"cannot make the output folder {folder}: {error.strerror}") from None
    return OutputLock(folder, folder / LOCK_NAME, made).acquire()


class SequenceWriter:
    """Writes frames as images into a hidden folder inside the output's (the same file system,
    so publishing is renames and links), then publishes them in one step (the video writer's
    interface: write, finish, abort, count)."""

    audio_mode = None

    def __init__(self, output: str | os.PathLike, info: VideoInfo, overwrite: bool = False) -> None:
        self.pattern = output_pattern(output)
        self.folder = self.pattern.parent if str(self.pattern.parent) else Path(".")
        self.overwrite = overwrite
        self.count = 0
        self._color = color_model(info)
        self._options = _SAVE_OPTIONS[self.pattern.suffix.lower()]
        self.stage = self.folder / f".slomo.partial{os.getpid()}.{id(self)}"
        try:
            self.stage.mkdir(parents=False)
        except OSError as error:
            raise SloMoError(f"cannot write into {self.folder}: {error.strerror}") from None

    def _name(self, index: int) -> str:
        return self.pattern.name % (FIRST_NUMBER + index)

    def write(self, frame) -> None:
        from PIL import Image

        image = frame if isinstance(frame, np.ndarray) else to_rgb(frame, self._color)
        path = self.stage / self._name(self.count)
        try:
            Image.fromarray(image).save(path, **self._options)
        except OSError as error:
            from superslomo.video.encode import write_error

            raise write_error(error, path) from None
        self.count += 1

    def finish(self, audio_end: Fraction | None = None) -> Path:
        """Publish the staged frames as one step: Ctrl-C is held back until it is done, and a
        failure midway puts everything back, so the folder shows either the old sequence or the
        new one, never a mix. Without overwrite, no existing file is replaced (if one appeared
        meanwhile, nothing is published); with it, every frame of an earlier sequence under the
        same pattern (a longer one included) is set aside first and removed once the new ones
        are in."""
        del audio_end  # sequences have no audio
        names = [self._name(i) for i in range(self.count)]
        prefix, digits, suffix = _split(self.pattern)
        aside = self.stage / ".replaced"
        moved: list[str] = []  # new frames in place
        set_aside: list[str] = []  # old frames moved into `aside`
        name = ""
        with interrupts_deferred():
            try:
                if self.overwrite:
                    aside.mkdir()
                    for path in _numbered(self.folder, prefix, digits, suffix).values():
                        name = path.name
                        os.rename(path, aside / name)
                        set_aside.append(name)
                for name in names:
                    target = self.folder / name
                    _place(self.stage / name, target)
                    moved.append(name)
            except BaseException as error:
                for done in moved:
                    with contextlib.suppress(OSError):
                        (self.folder / done).unlink()
                for old in set_aside:
                    with contextlib.suppress(OSError):
                        os.rename(aside / old, self.folder / old)
                self.abort()
                if isinstance(error, FileExistsError):
                    raise SloMoError(
                        f"{self.folder / name} appeared while this run was writing; nothing was "
                        f"replaced ({OVERWRITE_HINT})"
                    ) from None
                if isinstance(error, OSError):
                    from superslomo.video.encode import write_error

                    raise write_error(error, self.folder / name) from None
                raise
            self.abort()  # the stage: the links' sources and the old frames set aside
        return self.pattern

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
