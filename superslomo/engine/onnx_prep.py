"""Make a `--warp plugin` ONNX graph parseable into the BackWarp plugin.

TensorRT's ONNX parser maps an unknown node to a plugin whose name equals the node's op and whose
namespace is the node's `plugin_namespace` attribute; `aot=1` selects the ahead-of-time
implementation (the one that needs no Python at run time). Graphs from `slomo export` may carry
only the op and its domain, so the builder adds what is missing to a private copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from superslomo.errors import SloMoError

PLUGIN_OP = "BackWarp"
PLUGIN_NAMESPACE = "superslomo"


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise SloMoError("building a --warp plugin graph needs the onnx package: pip install onnx") from None
    return onnx


def plugin_nodes_missing_attributes(path: str | os.PathLike) -> tuple[int, int]:
    """(number of BackWarp nodes, how many of them lack plugin_namespace/aot)."""
    onnx = _import_onnx()
    model = onnx.load(str(path), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type == PLUGIN_OP]
    missing = 0
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        namespace = attrs.get("plugin_namespace")
        if isinstance(namespace, bytes):
            namespace = namespace.decode()
        if namespace != PLUGIN_NAMESPACE or int(attrs.get("aot", 0)) != 1:
            missing += 1
    return len(nodes), missing


def prepare_plugin_graph(src: str | os.PathLike, dst_dir: str | os.PathLike, required: bool = True) -> Path:
    """Return a path to `src` with every BackWarp node marked for the AOT plugin (src itself if already so).

    `required=False` for graphs that may have no warp at all (the flow graph).
    """
    count, missing = plugin_nodes_missing_attributes(src)
    if count == 0 and not required:
        return Path(src)
    if count == 0:
        raise SloMoError(f"{src}: the manifest says warp=plugin but the graph has no {PLUGIN_OP} node")
    if missing == 0:
        return Path(src)
    onnx = _import_onnx()
    model = onnx.load(str(src))
    for node in model.graph.node:
        if node.op_type != PLUGIN_OP:
            continue
        kept = [a for a in node.attribute if a.name not in ("plugin_namespace", "aot")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.extend([onnx.helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
                               onnx.helper.make_attribute("aot", 1)])
    dst = Path(dst_dir) / Path(src).name
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return dst
