"""Image sequences in and out of `slomo interpolate` (issue 14: it refused a folder of frames or a
%04d.png pattern, which the other commands accept). They take the video path through the same
pipeline: same timing rule (N frames in, N x factor out, the last one held), same checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_video_pipeline import BlendBackend, cli
from videoclips import decode_all, make_clip, psnr, scene_frame, stream_facts

from superslomo.errors import SloMoError
from superslomo.runtime import Interpolator
from superslomo.video.pipeline import Options, interpolate_video

W, H, N = 64, 48, 5


def frames_folder(
    folder: Path, names: str = "frame%03d.png", count: int = N, start: int = 0
) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = [scene_frame(i, W, H) for i in range(count)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / (names % (start + i)))
    return images


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run(src, dst, **options):
    return interpolate_video(
        src,
        dst,
        Interpolator(BlendBackend()),
        "blend",
        Options(**options),
        progress=False,
        say=lambda s: None,
    )


@pytest.mark.parametrize("factor", [2, 3])
def test_folder_to_pattern_keeps_originals_bit_exact(tmp_path, factor):
    images = frames_folder(tmp_path / "in")
    summary = run(tmp_path / "in", tmp_path / "out" / "%05d.png", factor=factor)
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [f"{i:05d}.png" for i in range(1, N * factor + 1)]
    assert summary.frames_out == N * factor and summary.new_frames == (N - 1) * (factor - 1)
    for i, image in enumerate(images):
        assert np.array_equal(read(written[i * factor]), image), f"original {i} changed"
    # Between originals: the stand-in's cross-fade, i.e. the model's frames, not copies.
    assert not np.array_equal(read(written[1]), images[0])


def test_pattern_in_video_out_at_the_input_rate(tmp_path):
    frames_folder(tmp_path / "in", names="%04d.png", start=1)
    out = tmp_path / "o.mp4"
    summary = run(tmp_path / "in" / "%04d.png", out, factor=2, input_fps="24")
    facts = stream_facts(out)
    assert facts["rate"] == 48 and facts["frames"] == 2 * N == summary.frames_out
    assert summary.audio.startswith("none")


def test_numbered_frames_are_taken_in_number_order(tmp_path):
    images = frames_folder(tmp_path / "in", names="f%d.png", count=12)  # f2.png sorts after f10.png by name
    run(tmp_path / "in", tmp_path / "out", factor=2)
    out = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in out[:2]] == ["000001.png", "000002.png"]  # a folder gets %06d.png
    for i in (2, 10):
        assert np.array_equal(read(out[2 * i]), images[i])


def test_video_to_folder(tmp_path):
    src = make_clip(tmp_path / "v.mp4", frames=4, size=(W, H), rate=25, audio="aac")
    summary = run(src, tmp_path / "frames", factor=2)
    out = sorted((tmp_path / "frames").iterdir())
    assert len(out) == 8 and summary.audio.startswith("dropped")
    assert psnr(read(out[2]), decode_all(src)[1]) == float("inf")  # the decoded original, as decoded


def test_existing_sequence_refused_unless_overwrite(tmp_path):
    frames_folder(tmp_path / "in")
    out = tmp_path / "out"
    frames_folder(out, names="%06d.png", count=20)  # an earlier, longer run
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SloMoError, match="exists .*-y/--overwrite"):
        run(tmp_path / "in", out, factor=2)
    run(tmp_path / "in", out, factor=2, overwrite=True)
    # The whole sequence is replaced: none of the earlier run's frames is left mixed in.
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(1, 2 * N + 1)] + [
        "notes.txt"
    ]


@pytest.mark.parametrize(
    "case", ["gap", "mixed sizes", "empty", "no match", "two fields", "input fps on video", "output in input"]
)
def test_bad_sequences_get_one_line_errors(tmp_path, capsys, case):
    src = tmp_path / "in"
    out = tmp_path / "out" / "%04d.png"
    args: list[str] = []
    message = {
        "gap": "frame 2 is missing",
        "mixed sizes": "must be one size",
        "empty": "holds no images",
        "no match": "no files match",
        "two fields": "exactly one %d",
        "input fps on video": "--input-fps is for",
        "output in input": "output folder is the input folder",
    }[case]
    if case == "gap":
        frames_folder(src, names="%04d.png")
        (src / "0002.png").unlink()
    elif case == "mixed sizes":
        frames_folder(src)
        Image.fromarray(scene_frame(9, W // 2, H)).save(src / "frame003.png")
    elif case == "empty":
        src.mkdir()
    elif case == "no match":
        frames_folder(src)
        src = src / "%04d.png"
    elif case == "two fields":
        frames_folder(src)
        out = tmp_path / "out" / "%02d_%04d.png"
    elif case == "input fps on video":
        src = make_clip(tmp_path / "v.mp4", frames=3, size=(W, H))
        args = ["--input-fps", "30"]
    elif case == "output in input":
        frames_folder(src, names="%04d.png")
        out = src / "%06d.png"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, _, err = cli(
        ["interpolate", str(src), "-o", str(out), "--model", str(tmp_path / "none"), *args], capsys
    )
    lines = [line for line in err.splitlines() if not line.startswith(("backend:", "note:"))]
    if case == "mixed sizes":
        # Found while reading, after the model loaded: this test's model does not exist, so check
        # the reading itself through the API.
        assert code == 2 and "model not found" in err
        with pytest.raises(SloMoError, match=message):
            run(src, out, factor=2)
    else:
        assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "left something behind"


def test_ctrl_c_while_publishing_leaves_the_old_sequence_or_the_new_never_a_mix(tmp_path, monkeypatch):
    import os
    import signal

    frames_folder(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    old = np.full((H, W, 3), 7, np.uint8)
    for i in range(1, 21):  # an earlier, longer run, every frame recognisable
        Image.fromarray(old).save(out / f"{i:06d}.png")
    placed = []

    def interrupting(real):
        def call(source, target, *args, **kwargs):
            result = real(source, target, *args, **kwargs)
            if Path(target).parent == out and Path(target).suffix == ".png":
                placed.append(target)
                if len(placed) == 3:  # Ctrl-C, three files into the publish
                    os.kill(os.getpid(), signal.SIGINT)
            return result

        return call

    for name in ("link", "replace", "rename"):
        monkeypatch.setattr(os, name, interrupting(getattr(os, name)))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # the CLI's may be installed
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "in", out, factor=2, overwrite=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert placed, "the publish never started"
    names = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    unchanged = [np.array_equal(read(out / name), old) for name in names]
    was_old = names == [f"{i:06d}.png" for i in range(1, 21)] and all(unchanged)
    is_new = names == [f"{i:06d}.png" for i in range(1, 2 * N + 1)] and not any(unchanged)
    assert was_old or is_new, f"a mix: {len(names)} frames, {sum(unchanged)} of them old"
    assert not [p for p in out.iterdir() if p.name.startswith(".slomo.partial")]
