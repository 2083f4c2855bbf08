"""One graph (flow or interp) on Triton's Python backend, run by ONNX Runtime on the CPU.

For servers without the onnxruntime backend (PyTriton's bundled tritonserver has only the Python
backend). The config is the one the native backends get: the same I/O, dynamic batching and
instance groups. Runs inside the server's Python stub: numpy, onnxruntime and Triton's
triton_python_backend_utils only (superslomo-trt is not installed there).
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # The session options of superslomo's own onnxruntime backend, so that a served frame is
        # the frame a local run computes.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(params.get("intra_op_thread_count") or 0) or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        folder = os.path.join(args["model_repository"], args["model_version"])
        # Not default_model_filename: for the Python backend that names model.py.
        path = os.path.join(folder, "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def _read(self, request):
        arrays = {}
        for name in self.inputs:
            value = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            # t arrives as [N, 1] (declared dims [1]); the graph takes [N].
            arrays[name] = value.reshape(-1) if name == "t" else value
        return arrays

    def execute(self, requests):
        # The dynamic batcher hands over requests of the same shapes; run them as one batch, as
        # the native backends do, and give each request its own rows back.
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except Exception as error:  # a malformed request fails alone
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
                continue
            key = tuple((name, arrays[name].shape[1:], arrays[name].dtype.str) for name in self.inputs)
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            sizes = [arrays[self.inputs[0]].shape[0] for _, arrays in members]
            feed = {name: np.concatenate([arrays[name] for _, arrays in members]) for name in self.inputs}
            try:
                results = self.session.run(self.outputs, feed)
            except Exception as error:
                message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                continue
            start = 0
            for (index, _), size in zip(members, sizes, strict=True):
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(value[start : start + size]))
                    for name, value in zip(self.outputs, results, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += size
        return responses

    def finalize(self):
        self.session = None
