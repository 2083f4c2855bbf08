"""The pair model: two frames and a list of times in, one frame per time out (Business Logic
Scripting on Triton's Python backend).

Per pair: one request to the flow model, then the interpolation model over the times in chunks
of at most `interp_max_batch`, the pair repeated along the batch. Every pair of an execution is
in flight at once (async BLS), so the graph models' dynamic batchers can merge requests from
different pairs and clients. Frames arrive padded and in graph layout; the client pads, converts,
crops and rounds (superslomo's own helpers), so served frames equal a local run's.

Runs inside the server's Python stub: numpy and triton_python_backend_utils only.
"""

import asyncio
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.flow_model = params["flow_model"]
        self.interp_model = params["interp_model"]
        self.chunk = max(1, int(params.get("interp_max_batch") or 1))

    async def _infer(self, model, inputs, outputs):
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()]
        kwargs = {}
        if hasattr(pb_utils, "PreferredMemory"):
            # GPU models may answer in device memory; this model works on host arrays.
            kwargs["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)
        request = pb_utils.InferenceRequest(
            model_name=model, requested_output_names=list(outputs), inputs=tensors, **kwargs
        )
        response = await request.async_exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}

    async def _pair(self, frame0, frame1, times):
        """frame0, frame1: one pair, batch of one, graph layout; times: [T] -> frame_t [T, ...]."""
        flows = await self._infer(self.flow_model, {"frame0": frame0, "frame1": frame1}, ("flow01", "flow10"))
        chunks = [times[i : i + self.chunk] for i in range(0, len(times), self.chunk)]
        jobs = []
        for chunk in chunks:
            n = len(chunk)
            inputs = {
                "frame0": np.repeat(frame0, n, axis=0),
                "frame1": np.repeat(frame1, n, axis=0),
                "flow01": np.repeat(flows["flow01"], n, axis=0),
                "flow10": np.repeat(flows["flow10"], n, axis=0),
                "t": np.asarray(chunk, dtype=np.float32).reshape(n, 1),
            }
            jobs.append(self._infer(self.interp_model, inputs, ("frame_t",)))
        results = await asyncio.gather(*jobs)
        return np.concatenate([r["frame_t"] for r in results])

    async def _request(self, request):
        frame0 = pb_utils.get_input_tensor_by_name(request, "frame0").as_numpy()
        frame1 = pb_utils.get_input_tensor_by_name(request, "frame1").as_numpy()
        times = pb_utils.get_input_tensor_by_name(request, "t").as_numpy().astype(np.float32)
        if frame0.shape != frame1.shape:
            raise ValueError(f"frame0 {frame0.shape} and frame1 {frame1.shape} differ")
        if times.ndim != 2 or times.shape[0] != frame0.shape[0] or times.shape[1] < 1:
            raise ValueError(f"t must be [pairs, times] with at least one time, got {times.shape}")
        if not np.all((times > 0) & (times < 1)):
            raise ValueError("times must lie strictly between 0 and 1")
        pairs = await asyncio.gather(
            *(self._pair(frame0[b : b + 1], frame1[b : b + 1], times[b]) for b in range(frame0.shape[0]))
        )
        return np.stack(pairs)

    async def execute(self, requests):
        results = await asyncio.gather(*(self._request(r) for r in requests), return_exceptions=True)
        responses = []
        for result in results:
            if isinstance(result, BaseException):
                text = str(result).strip().splitlines()
                message = text[0] if text else type(result).__name__
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
            else:
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("frame_t", result)])
                )
        return responses
