"""PyTorch -> ONNX export of the two graphs (flow, interpolation)."""

from superslomo.export.onnx_export import DEFAULT_OPSET, ExportOptions, check_graph, export_model

__all__ = ["DEFAULT_OPSET", "ExportOptions", "check_graph", "export_model"]
