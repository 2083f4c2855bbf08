"""Throughput and latency of a Triton-served model at 1, 4 and 8 concurrent clients, next to a
local run of the same model in this process (onnxruntime, CPU).

    .venv/bin/python benchmarks/triton_serving.py                      # the shipped model, 448x256
    .venv/bin/python benchmarks/triton_serving.py --model DIR --size 1280x720 --pairs 8
    .venv/bin/python benchmarks/triton_serving.py --server grpc://gpu-box:8001   # a running server

Without --server it starts PyTriton's bundled tritonserver (make triton-env) on loopback with the
graphs behind the Python backend (ONNX Runtime on the CPU), so on one machine it measures what
serving costs (copies, the protocol, batching) rather than a GPU's speed. Each client sends pairs
one after another (one time step each, as `--factor 2` does) over its own connection.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def frames(width: int, height: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [(np.roll(base, i, axis=1), np.roll(base, i + 4, axis=1)) for i in range(count)]


def run_clients(make, pairs, clients: int) -> dict:
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def work() -> None:
        try:
            with make() as interp:
                interp.interpolate(*pairs[0], [0.5])  # warm this connection
                barrier.wait()
                for f0, f1 in pairs:
                    began = time.perf_counter()
                    interp.interpolate(f0, f1, [0.5])
                    with lock:
                        latencies.append(time.perf_counter() - began)
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise errors[0]
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "pairs": len(latencies),
        "pairs_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def flow_counts(url: str) -> tuple[int, int] | None:
    if not url.startswith("http://"):
        return None
    import tritonclient.http as http

    client = http.InferenceServerClient(url.removeprefix("http://"))
    try:
        row = client.get_inference_statistics("slomo_flow")["model_stats"][0]
        return int(row["inference_count"]), int(row["execution_count"])
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder or checkpoint (default: shipped)"
    )
    parser.add_argument("--size", default="448x256", help="WIDTHxHEIGHT")
    parser.add_argument("--pairs", type=int, default=6, help="pairs per client")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--server", default=None, help="a running server's URL (default: start one here)")
    parser.add_argument("--server-env", type=Path, default=ROOT / "runs" / "triton-venv")
    parser.add_argument("--instances", type=int, default=1, help="instances of each graph model")
    # One thread each by default: on a loaded machine ONNX Runtime's spinning thread pools make two
    # threads slower than one, and both sides must run alike for the comparison to mean anything.
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, local and per instance")
    args = parser.parse_args()

    from superslomo.apps.models import model_folder
    from superslomo.runtime import Interpolator
    from superslomo.runtime.options import OnnxRuntimeOptions
    from superslomo.serving.triton_client import TritonInterpolator
    from superslomo.serving.triton_repo import RepoOptions
    from superslomo.serving.triton_serve import locate_server, serving

    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = model_folder(args.model)
    pairs = frames(width, height, args.pairs)
    counts = [int(c) for c in args.clients.split(",")]

    local = Interpolator.from_dir(folder, OnnxRuntimeOptions(threads=args.threads))
    local.interpolate(*pairs[0], [0.5])
    began = time.perf_counter()
    for f0, f1 in pairs:
        local.interpolate(f0, f1, [0.5])
    local_s = (time.perf_counter() - began) / len(pairs)
    local.close()
    print(f"model {folder}, {width}x{height}, one new frame per pair, {args.threads} ONNX Runtime thread(s)")
    print(f"local onnxruntime (this process): {1 / local_s:6.2f} pairs/s, {1000 * local_s:7.1f} ms per pair")

    def report(url: str) -> None:
        for clients in counts:
            before = flow_counts(url)
            row = run_clients(lambda: TritonInterpolator(url, timeout=600), pairs, clients)
            after = flow_counts(url)
            merged = ""
            if before and after:
                merged = f", flow: {after[0] - before[0]} requests in {after[1] - before[1]} executions"
            print(
                f"triton {clients} client(s): {row['pairs_per_s']:6.2f} pairs/s, latency p50 "
                f"{row['p50_ms']:7.1f} ms, p95 {row['p95_ms']:7.1f} ms ({row['pairs']} pairs{merged})"
            )

    if args.server:
        report(args.server)
        return
    install = locate_server(server_env=args.server_env)
    try:
        options = RepoOptions(backend="python", instances=args.instances, threads=args.threads)
        with serving(folder, options, install) as server:
            print(
                f"server: {install.label}; graphs behind the Python backend, "
                f"{args.instances} instance(s) each"
            )
            report(server.http_url)
    finally:
        install.cleanup()


if __name__ == "__main__":
    main()
