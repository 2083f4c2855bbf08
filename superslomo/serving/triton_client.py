"""The client of a Triton Inference Server that serves a `slomo triton-repo` repository.

Two runtime backends under the common `Interpolator` (which pads, converts, crops, rounds, checks
for NaN/Inf and streams, as it does for a local model), so a served video equals a local run on
the same backend:

- `TritonPairBackend` (what `slomo interpolate --server` runs, `TritonInterpolator` builds it):
  one request per pair to the pair model, which computes flow once and the interpolation batched
  over t inside the server. `prepare` keeps the padded pair on the host (no network).
- `TritonBackend`: the two graph models, for apps that want flow and interpolation as separate
  calls.

Both open every repository kind `slomo triton-repo` writes (ONNX graphs on any backend, TensorRT
plans): the model's manifest comes from its config. Every call has a deadline (`timeout`): the
HTTP client's connection and network timeouts, gRPC's `client_timeout` on each call. Every
failure is a one-line SloMoError: server down or hung, model not loaded, a size the engines'
profiles refuse, a server lost mid-stream. tritonclient (the `serve` extra) is imported lazily,
and each thread gets its own connection (the HTTP client is not shareable across threads); a
connection that failed is closed and dropped from the pool.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from superslomo.contracts.frames import padded_size
from superslomo.contracts.manifest import Manifest, parse_manifest
from superslomo.contracts.shapes import Profile, Shape
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend
from superslomo.runtime.interpolator import Interpolator

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
DEFAULT_MODEL = "slomo"
DEFAULT_TIMEOUT = 60.0
# Times per pair request: the answer holds one full frame per time, so very high factors are
# split (flow is then computed once per request instead of once per pair).
TIMES_PER_REQUEST = 16
INSTALL_HINT = "pip install 'superslomo-trt[serve]'"


class ServerError(SloMoError):
    """The server could not be reached or refused a request."""


def _tritonclient(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise SloMoError(f"talking to a Triton server needs tritonclient: {INSTALL_HINT}") from None
    return module


def parse_server(url: str, protocol: str | None = None) -> tuple[str, str]:
    """`http://host:8000`, `grpc://host:8001` or `host[:port]` (with `protocol`, default http)
    -> (protocol, host:port)."""
    text = str(url).strip()
    if not text:
        raise SloMoError("--server needs a URL, e.g. http://127.0.0.1:8000 or grpc://127.0.0.1:8001")
    scheme = None
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in PROTOCOLS:
            raise SloMoError(f"--server {url!r}: the scheme must be http:// or grpc://")
        text = rest
    if protocol is not None and protocol not in PROTOCOLS:
        raise SloMoError(f"unknown --protocol {protocol!r}; choose http or grpc")
    if scheme and protocol and scheme != protocol:
        raise SloMoError(f"--server {url!r} says {scheme} but --protocol says {protocol}")
    chosen = scheme or protocol or "http"
    parts = urlsplit(f"//{text}")
    if parts.path.strip("/") or not parts.hostname:
        raise SloMoError(f"--server {url!r} must be HOST[:PORT] (no path), e.g. 127.0.0.1:8000")
    try:
        port = parts.port or DEFAULT_PORTS[chosen]
    except ValueError:
        raise SloMoError(f"--server {url!r} has a bad port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return chosen, f"{host}:{port}"


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(text).__name__


@dataclass
class RemotePair:
    """What prepare() hands to synthesize(): the padded pair in graph layout and its true size."""

    frame0: np.ndarray
    frame1: np.ndarray
    height: int
    width: int


class TritonConnection:
    """One server, one model name: per-thread tritonclient clients, errors turned into one line."""

    def __init__(
        self,
        url: str,
        protocol: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        model: str = DEFAULT_MODEL,
    ) -> None:
        if not timeout or timeout <= 0:
            raise SloMoError(f"--timeout must be a positive number of seconds, got {timeout!r}")
        self.protocol, self.address = parse_server(url, protocol)
        self.url = f"{self.protocol}://{self.address}"
        self.timeout = float(timeout)
        self.model = model
        self._module = _tritonclient(self.protocol)
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self.reached = False  # once it answered, a refused connection means it went away

    # -- clients and errors ----------------------------------------------------------------
    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                client = self._module.InferenceServerClient(
                    self.address, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            else:
                client = self._module.InferenceServerClient(self.address)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        # A connection that failed mid-request may hold half a response: never reuse it.
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                self._clients = [c for c in self._clients if c is not client]
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass

    def error(self, error: BaseException, doing: str) -> ServerError:
        """A one-line error for any failure of a call to the server."""
        from tritonclient.utils import InferenceServerException

        status = ""
        if isinstance(error, InferenceServerException):
            status = str(error.status() or "")
            text = _first_line(error.message() or error)
        else:
            text = _first_line(error) if str(error).strip() else type(error).__name__
        lowered = f"{status} {text}".lower()
        if (
            isinstance(error, (socket.timeout, TimeoutError))
            or "deadline" in lowered
            or "timed out" in lowered
        ):
            return ServerError(
                f"the Triton server at {self.url} did not answer {doing} within {self.timeout:g} s "
                "(--timeout sets the limit)"
            )
        refused = isinstance(error, ConnectionRefusedError) or "connection refused" in lowered
        refused = refused or "failed to connect" in lowered or "unavailable" in lowered
        if refused and self.reached:
            return ServerError(f"lost the Triton server at {self.url} {doing} ({text})")
        if refused:
            return ServerError(
                f"cannot reach a Triton server at {self.url} ({text}); start one (slomo serve MODEL_DIR) "
                "or check --server"
            )
        if isinstance(error, (ConnectionError, OSError, EOFError)) or "connection" in lowered:
            return ServerError(f"lost the Triton server at {self.url} {doing}: {text}")
        return ServerError(f"the Triton server at {self.url} failed {doing}: {text}")

    def call(self, doing: str, function: str, *args: Any, **kwargs: Any) -> Any:
        if self.protocol == "grpc":
            # gRPC has no client-wide deadline: without one a hung server hangs every call.
            kwargs.setdefault("client_timeout", self.timeout)
        try:
            result = getattr(self.client(), function)(*args, **kwargs)
            self.reached = True
            return result
        except SloMoError:
            raise
        except Exception as error:  # tritonclient, gevent and grpc raise many kinds
            self._drop_client()
            raise self.error(error, doing) from None

    # -- the model -----------------------------------------------------------------------
    def model_config(self, model: str) -> dict[str, Any]:
        self.call("a health check", "is_server_live")
        ready = self.call(f"about model {model!r}", "is_model_ready", model)
        if not ready:
            loaded = self.loaded_models()
            listed = f"ready there: {', '.join(loaded)}" if loaded else "none is ready there"
            raise ServerError(
                f"the Triton server at {self.url} has no model {model!r} ready ({listed}); write a "
                "repository with slomo triton-repo and load it, or pass the model's name"
            )
        if self.protocol == "grpc":
            response = self.call(f"about model {model!r}", "get_model_config", model, as_json=True)
            return response.get("config", response)
        return self.call(f"about model {model!r}", "get_model_config", model)

    def loaded_models(self) -> list[str]:
        try:
            index = self.call("listing models", "get_model_repository_index")
        except ServerError:
            return []
        if self.protocol == "grpc":
            index = json.loads(self._grpc_json(index)).get("models", [])
        return sorted(m["name"] for m in index if str(m.get("state", "")).upper() == "READY")

    @staticmethod
    def _grpc_json(message: Any) -> str:
        from google.protobuf import json_format

        return json_format.MessageToJson(message, preserving_proto_field_name=True)

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str], doing: str
    ) -> dict[str, np.ndarray]:
        module = self._module
        tensors = []
        for name, value in inputs.items():
            value = np.ascontiguousarray(value)
            tensor = module.InferInput(
                name, list(value.shape), "UINT8" if value.dtype == np.uint8 else "FP32"
            )
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        wanted = [module.InferRequestedOutput(name) for name in outputs]
        result = self.call(doing, "infer", model, tensors, outputs=wanted)
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - the server may be gone already
                pass


def _parameter(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key)
    if isinstance(value, Mapping):
        return value.get("string_value")
    return None


def _manifest_of(config: Mapping[str, Any], where: str) -> Manifest:
    from superslomo.serving.triton_repo import PARAM_MANIFEST

    text = _parameter(config, PARAM_MANIFEST)
    if not text:
        raise ServerError(
            f"{where} was not written by slomo triton-repo (it has no {PARAM_MANIFEST} parameter)"
        )
    try:
        return parse_manifest(json.loads(text), where)
    except ValueError:
        raise ServerError(f"{where}: its {PARAM_MANIFEST} parameter is not JSON") from None


def _profiles_of(config: Mapping[str, Any]) -> list[Profile]:
    from superslomo.serving.triton_repo import PARAM_PROFILES

    text = _parameter(config, PARAM_PROFILES)
    return [Profile.from_json(p) for p in json.loads(text)] if text else []


def check_size(profiles: list[Profile], height: int, width: int, multiple: int, model: str) -> None:
    """Refuse, before sending, a frame the served engines' profiles cannot take."""
    if not profiles:
        return
    ph, pw = padded_size(height, width, multiple)
    if any(p.contains(Shape(1, ph, pw)) for p in profiles):
        return
    ranges = "; ".join(f"{p.min.w}x{p.min.h} to {p.max.w}x{p.max.h}" for p in profiles)
    said = f"frames padded to {pw}x{ph}" if (ph, pw) == (height, width) else f"{width}x{height} frames"
    said += f" (padded to {pw}x{ph})" if (ph, pw) != (height, width) else ""
    raise SloMoError(
        f"{said} are outside what model {model!r} accepts "
        f"(engine profiles, WIDTHxHEIGHT: {ranges}); rebuild the engines with slomo build-engine --min/--max "
        "covering it"
    )


class TritonPairBackend(Backend):
    """The pair model of a served repository as a runtime backend: `prepare` keeps the padded
    pair on the host, `synthesize` sends it with a batch of times in one request."""

    name = "triton"
    kinds = ("onnx", "tensorrt")  # the server runs either; the manifest says which

    def __init__(
        self,
        url: str,
        protocol: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
        times_per_request: int = TIMES_PER_REQUEST,
    ) -> None:
        if times_per_request < 1:
            raise SloMoError(f"times_per_request must be >= 1, got {times_per_request}")
        self.connection = TritonConnection(url, protocol, timeout, model)
        self.model = model
        self.times_per_request = times_per_request
        try:
            config = self.connection.model_config(model)
            manifest = _manifest_of(config, f"model {model!r} at {self.connection.url}")
            self.profiles = _profiles_of(config)
            super().__init__(None, manifest)
        except BaseException:
            self.connection.close()
            raise

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def max_batch(self) -> int:
        return self.times_per_request

    def describe(self) -> str:
        m = self.manifest
        # No comma: the video summary names the backend by the words before the first one.
        return f"triton {self.url} (model {self.model}: {m.kind} {m.precision} {m.io} frames)"

    def close(self) -> None:
        self.connection.close()
        self.closed = True

    def prepare(self, frame0: np.ndarray, frame1: np.ndarray) -> RemotePair:
        """No network: the server computes flow with the frames. Sizes the served engines'
        profiles refuse are refused here, before sending."""
        height, width = frame0.shape[-2:] if self.manifest.io != "uint8" else frame0.shape[1:3]
        check_size(self.profiles, height, width, self.manifest.size_multiple, self.model)
        return RemotePair(frame0, frame1, height, width)

    def synthesize(self, pair: RemotePair, times: Sequence[float]) -> np.ndarray:
        inputs = {
            "frame0": pair.frame0,
            "frame1": pair.frame1,
            "t": np.asarray(times, dtype=np.float32)[None],
        }
        out = self.connection.infer(self.model, inputs, ("frame_t",), "during a pair")["frame_t"][0]
        if len(out) != len(times):
            raise ServerError(
                f"model {self.model!r} at {self.url} answered {len(out)} frames for {len(times)} times"
            )
        return out

    def host_flows(self, pair: RemotePair) -> tuple[np.ndarray, np.ndarray]:
        raise SloMoError("the served pair model keeps its flows inside the server")


def TritonInterpolator(  # noqa: N802 - reads as the class it used to be
    url: str,
    protocol: str | None = None,
    model: str = DEFAULT_MODEL,
    timeout: float = DEFAULT_TIMEOUT,
    times_per_request: int = TIMES_PER_REQUEST,
    check_finite: bool = True,
) -> Interpolator:
    """An Interpolator whose model is the pair model `model` on the Triton server at `url`."""
    backend = TritonPairBackend(url, protocol, model, timeout, times_per_request)
    return Interpolator(backend, max_batch=times_per_request, check_finite=check_finite)


class TritonBackend(Backend):
    """The runtime Backend protocol over the served graph models: `Interpolator(TritonBackend(url))`
    runs the local pair pipeline (host pairs) with the two graphs on a server."""

    name = "triton"
    kinds = ("onnx", "tensorrt")  # the server runs either; the manifest says which

    def __init__(
        self,
        url: str,
        protocol: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        from superslomo.serving.triton_repo import model_names

        self.connection = TritonConnection(url, protocol, timeout, model)
        self.models = model_names(model)
        try:
            config = self.connection.model_config(self.models["flow"])
            self.connection.model_config(self.models["interp"])
            manifest = _manifest_of(config, f"model {self.models['flow']!r} at {self.connection.url}")
            super().__init__(None, manifest)
        except BaseException:
            self.connection.close()
            raise
        self._max_batch = int(config.get("max_batch_size") or 1)

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def describe(self) -> str:
        return f"served by {self.connection.url}"

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from superslomo.contracts.graph_io import GRAPH_OUTPUTS

        if graph not in GRAPH_OUTPUTS:
            raise SloMoError(f"unknown graph {graph!r}; expected flow or interp")
        feed = dict(inputs)
        if "t" in feed:
            feed["t"] = np.asarray(feed["t"], dtype=np.float32).reshape(-1, 1)  # declared dims [1]
        return self.connection.infer(self.models[graph], feed, GRAPH_OUTPUTS[graph], f"during {graph}")

    def close(self) -> None:
        self.connection.close()
        self.closed = True
