"""The model choice: made once, picklable, hashed into Ray's work key; options a path cannot
honour are refused in one line."""

from __future__ import annotations

import pickle
from fractions import Fraction

import pytest

from superslomo.errors import SloMoError
from superslomo.runtime.choice import ModelChoice
from superslomo.runtime.options import OnnxRuntimeOptions, OpenVinoOptions


def test_a_choice_travels_by_pickle_and_names_what_changes_the_frames(onnx_model):
    f32 = ModelChoice.of_folder(onnx_model, OpenVinoOptions())
    assert pickle.loads(pickle.dumps(f32)) == f32
    bf16 = ModelChoice.of_folder(onnx_model, OpenVinoOptions(precision="bf16"))
    assert bf16.precision == "bf16" and f32.precision == "fp32"
    ort = ModelChoice.of_folder(onnx_model, OnnxRuntimeOptions())
    identities = [c.identity() for c in (f32, bf16, ort)]
    assert len({repr(i) for i in identities}) == 3
    # threads change the speed, not the frames: one identity for any count
    assert ort.with_threads(3).identity() == ort.identity() and ort.with_threads(3).options.threads == 3


def test_ray_work_key_hashes_the_choice(onnx_model, tmp_path):
    from superslomo.serving.ray_batch import _model_identity, work_key
    from superslomo.video.pipeline import Options
    from superslomo.video.segments import Plan

    source = tmp_path / "in.mp4"
    source.write_bytes(b"x")
    plan = Plan(None, 0, ())

    def key(choice):
        return work_key(source, Options(), Fraction(48), 1, "yuv420p", _model_identity(choice, "auto"), plan)

    keys = {
        key(ModelChoice.of_folder(onnx_model, OnnxRuntimeOptions())),
        key(ModelChoice.of_folder(onnx_model, OpenVinoOptions())),
        key(ModelChoice.of_folder(onnx_model, OpenVinoOptions(precision="bf16"))),
    }
    assert len(keys) == 3


@pytest.mark.parametrize("pin", [{"precision": "int8"}, {"backend": "openvino"}])
def test_server_refuses_options_it_cannot_honour_in_one_line(pin):
    from superslomo.apps.interpolate import Where, open_server

    with pytest.raises(SloMoError) as caught:
        open_server(Where(server="localhost:8001", **pin))
    assert "--server runs the model the server holds" in str(caught.value) and "\n" not in str(caught.value)
