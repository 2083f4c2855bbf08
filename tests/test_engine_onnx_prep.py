"""Marking BackWarp nodes for TensorRT's ONNX parser (plugin_namespace, aot)."""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from superslomo.engine.onnx_prep import plugin_nodes_missing_attributes, prepare_plugin_graph  # noqa: E402
from superslomo.errors import SloMoError  # noqa: E402


def _graph(path, with_attrs=False, op="BackWarp"):
    attrs = {"plugin_namespace": "superslomo", "aot": 1, "convention": "exact"} if with_attrs else {}
    node = helper.make_node(op, ["image", "flow"], ["warped"], domain="superslomo", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"]),
            helper.make_tensor_value_info("flow", TensorProto.FLOAT, ["N", 2, "H", "W"]),
        ],
        [helper.make_tensor_value_info("warped", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("superslomo", 1)]
    )
    onnx.save(model, str(path))
    return path


def test_missing_attributes_are_added_to_a_copy(tmp_path):
    src = _graph(tmp_path / "interp.onnx")
    before = src.read_bytes()
    assert plugin_nodes_missing_attributes(src) == (1, 1)
    out_dir = tmp_path / "scratch"
    out_dir.mkdir()
    dst = prepare_plugin_graph(src, out_dir)
    assert dst != src and src.read_bytes() == before
    assert plugin_nodes_missing_attributes(dst) == (1, 0)
    node = onnx.load(str(dst)).graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # A node from before the warp convention existed computes the reference warp, and says so now.
    assert attrs == {"plugin_namespace": b"superslomo", "aot": 1, "convention": b"reference"}
    assert node.domain == "superslomo"


def test_already_marked_graph_is_used_as_is(tmp_path):
    src = _graph(tmp_path / "interp.onnx", with_attrs=True)
    assert prepare_plugin_graph(src, tmp_path) == src


def test_plugin_manifest_without_backwarp_node_is_an_error(tmp_path):
    src = _graph(tmp_path / "flow.onnx", op="Identity2")
    with pytest.raises(SloMoError, match="no BackWarp node"):
        prepare_plugin_graph(src, tmp_path)
    assert prepare_plugin_graph(src, tmp_path, required=False) == src
