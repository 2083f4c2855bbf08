"""Make a `--warp plugin` ONNX graph parseable into the BackWarp plugin.

TensorRT's ONNX parser maps an unknown node to a plugin whose name equals the node's op and whose
namespace is the node's `plugin_namespace` attribute; `aot=1` selects the ahead-of-time
implementation (the one that needs no Python at run time). Graphs from `slomo export` may carry
only the op and its domain, so the builder adds what is missing to a private copy.

The node's `convention` attribute (the warp convention, "reference" | "exact") is one the plugin
declares without a default (tensorrt.plugin allows none), so every node must carry it: graphs
exported before it existed get "reference", which is what they compute.
"""

from __future__ import annotations

import os
from pathlib import Path

from superslomo.contracts.files import atomic_path
from superslomo.contracts.graph_io import PLUGIN_NAME, PLUGIN_NAMESPACE
from superslomo.errors import SloMoError

CONVENTION_ATTRIBUTE = "convention"
CONVENTIONS = ("reference", "exact")
LEGACY_CONVENTION = "reference"


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise SloMoError("building a --warp plugin graph needs the onnx package: pip install onnx") from None
    return onnx


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def _plugin_nodes(path: str | os.PathLike) -> list[dict]:
    """The attributes of each BackWarp node in the graph at `path`."""
    onnx = _import_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return [
        {a.name: _text(onnx.helper.get_attribute_value(a)) for a in node.attribute}
        for node in model.graph.node
        if node.op_type == PLUGIN_NAME
    ]


def plugin_nodes_missing_attributes(path: str | os.PathLike) -> tuple[int, int]:
    """(number of BackWarp nodes, how many of them lack plugin_namespace/aot/convention)."""
    nodes = _plugin_nodes(path)
    missing = sum(
        1
        for attrs in nodes
        if attrs.get("plugin_namespace") != PLUGIN_NAMESPACE
        or int(attrs.get("aot", 0)) != 1
        or CONVENTION_ATTRIBUTE not in attrs
    )
    return len(nodes), missing


def plugin_conventions(path: str | os.PathLike) -> set[str]:
    """The warp conventions the graph's BackWarp nodes compute (a node without the attribute: reference)."""
    return {attrs.get(CONVENTION_ATTRIBUTE, LEGACY_CONVENTION) for attrs in _plugin_nodes(path)}


def _check_conventions(src: str | os.PathLike, expected: str | None) -> None:
    found = plugin_conventions(src)
    unknown = sorted(str(c) for c in found - set(CONVENTIONS))
    if unknown:
        raise SloMoError(
            f"{src}: BackWarp convention {unknown[0]!r} is unknown to this version of "
            f"superslomo-trt (it knows {', '.join(CONVENTIONS)}); upgrade it or re-export the "
            "model"
        )
    if expected is not None and found - {expected}:
        raise SloMoError(
            f"{src}: the manifest says warp convention {expected} but the graph's BackWarp "
            f"nodes compute {', '.join(sorted(found))}; re-export the folder"
        )


def prepare_plugin_graph(
    src: str | os.PathLike, dst_dir: str | os.PathLike, required: bool = True, convention: str | None = None
) -> Path:
    """Return a path to `src` with every BackWarp node marked for the AOT plugin (src itself if already so).

    `required=False` for graphs that may have no warp at all (the flow graph). `convention`, when
    given (the manifest's warp_convention), must be what the nodes compute.
    """
    count, missing = plugin_nodes_missing_attributes(src)
    if count == 0 and not required:
        return Path(src)
    if count == 0:
        raise SloMoError(f"{src}: the manifest says warp=plugin but the graph has no {PLUGIN_NAME} node")
    _check_conventions(src, convention)
    if missing == 0:
        return Path(src)
    onnx = _import_onnx()
    model = onnx.load(str(src))
    for node in model.graph.node:
        if node.op_type != PLUGIN_NAME:
            continue
        present = {a.name for a in node.attribute}
        kept = [a for a in node.attribute if a.name not in ("plugin_namespace", "aot")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.extend(
            [
                onnx.helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
                onnx.helper.make_attribute("aot", 1),
            ]
        )
        if CONVENTION_ATTRIBUTE not in present:
            node.attribute.append(onnx.helper.make_attribute(CONVENTION_ATTRIBUTE, LEGACY_CONVENTION))
    dst = Path(dst_dir) / Path(src).name
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst
