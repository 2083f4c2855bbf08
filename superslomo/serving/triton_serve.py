"""`slomo serve`: a model folder behind Triton's protocol on this machine, for people without a
Triton deployment, and the server the tests start.

It writes the repository (triton_repo.py) and runs a local `tritonserver` on it: one found on the
PATH (or named), as in NVIDIA's container, or the one PyTriton bundles in a Python environment
of its own (`--server-env`, made by `make triton-env`: nvidia-pytriton pins numpy<2, so it cannot
share superslomo's environment). PyTriton's bundle has only the Python backend, so there the graph
models run ONNX Runtime behind it; the configs are otherwise the ones a GPU server gets.

Two facts about the bundle, found by trying: its Python stub embeds the interpreter it was linked
with, which finds its packages from the first `python3` on the PATH (so the environment's bin
goes first), and it links libpython from the system while a venv's interpreter may be another
build, so the interpreter's own lib folder goes on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from superslomo.contracts.manifest import read_manifest
from superslomo.errors import Interrupted, SloMoError
from superslomo.serving.triton_repo import RepoOptions, model_names, write_repository

SERVER_ENV_VARIABLE = "SLOMO_TRITON_ENV"
SERVER_BINARY_VARIABLE = "SLOMO_TRITONSERVER"
CONTAINER_BINARY = Path("/opt/tritonserver/bin/tritonserver")
SERVE_BACKENDS = ("auto", "onnxruntime", "tensorrt", "python")


@dataclass
class ServerInstall:
    """A runnable tritonserver: the binary, its backends folder and the environment it needs."""

    binary: Path
    backend_dir: Path
    backends: frozenset[str]
    label: str
    env: dict[str, str] = field(default_factory=dict)
    scratch: Path | None = None  # a folder made for this install, removed by cleanup()

    def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def _pytriton_install(env_dir: Path) -> ServerInstall:
    bundles = sorted(env_dir.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    python = env_dir / "bin" / "python"
    if not bundles or not python.exists():
        raise SloMoError(
            f"{env_dir} is not a Python environment with nvidia-pytriton installed "
            "(make triton-env creates one in runs/triton-venv)"
        )
    bundle = bundles[-1]
    site = bundle.parents[1]
    version = site.parent.name.removeprefix("python")  # lib/python3.11/site-packages
    stub = bundle / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not (bundle / "bin" / "tritonserver").is_file() or not stub.is_file():
        raise SloMoError(
            f"{bundle} lacks tritonserver or its Python {version} stub; reinstall nvidia-pytriton"
        )
    try:
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        raise SloMoError(f"cannot run the Python of {env_dir}: {error}") from None
    # The bundle keeps one stub per Python version; the server wants it inside its backend folder.
    scratch = Path(tempfile.mkdtemp(prefix="slomo-triton-backends-"))
    target = scratch / "python"
    target.mkdir()
    for item in (bundle / "backends" / "python").iterdir():
        if item.name != "__pycache__":
            (target / item.name).symlink_to(item)
    shutil.copy2(stub, target / "triton_python_backend_stub")
    libs = [str(site / "nvidia_pytriton.libs"), libdir, os.environ.get("LD_LIBRARY_PATH", "")]
    env = {
        "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": os.pathsep.join(p for p in libs if p),
    }
    pytriton_version = next(
        (p.name.removesuffix(".dist-info").split("-")[1] for p in site.glob("nvidia_pytriton-*.dist-info")),
        "?",
    )
    return ServerInstall(
        binary=bundle / "bin" / "tritonserver",
        backend_dir=scratch,
        backends=frozenset({"python"}),
        label=f"tritonserver of PyTriton {pytriton_version} (Python backend only) from {env_dir}",
        env=env,
        scratch=scratch,
    )


def locate_server(
    tritonserver: str | os.PathLike | None = None, server_env: str | os.PathLike | None = None
) -> ServerInstall:
    """The tritonserver to run: `server_env` (a Python environment with nvidia-pytriton), or the
    binary `tritonserver`, or $SLOMO_TRITON_ENV, $SLOMO_TRITONSERVER, the PATH, /opt/tritonserver."""
    if server_env is not None and tritonserver is not None:
        raise SloMoError("give --tritonserver or --server-env, not both")
    if server_env is not None:
        return _pytriton_install(Path(server_env))
    binary = Path(tritonserver) if tritonserver is not None else None
    if binary is None and os.environ.get(SERVER_ENV_VARIABLE):
        return _pytriton_install(Path(os.environ[SERVER_ENV_VARIABLE]))
    if binary is None and os.environ.get(SERVER_BINARY_VARIABLE):
        binary = Path(os.environ[SERVER_BINARY_VARIABLE])
    if binary is None:
        found = shutil.which("tritonserver")
        binary = Path(found) if found else CONTAINER_BINARY
        if not binary.is_file():
            raise SloMoError(
                "no tritonserver found: run inside NVIDIA's Triton container, pass --tritonserver PATH, "
                "or --server-env DIR with a PyTriton environment (make triton-env creates runs/triton-venv)"
            )
    if not binary.is_file():
        raise SloMoError(f"tritonserver not found: {binary}")
    backend_dir = binary.resolve().parent.parent / "backends"
    backends = (
        frozenset(p.name for p in backend_dir.iterdir() if p.is_dir())
        if backend_dir.is_dir()
        else frozenset()
    )
    return ServerInstall(binary, backend_dir, backends, f"tritonserver at {binary}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # A server left behind by a killed parent would hold its ports and memory: Linux's
    # parent-death signal ends it with us.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """A tritonserver process serving `repo` on loopback (or `host`), its own process group."""

    def __init__(
        self,
        repo: str | os.PathLike,
        install: ServerInstall,
        http_port: int | None = None,
        grpc_port: int | None = None,
        host: str = "127.0.0.1",
        log: str | os.PathLike | None = None,
    ) -> None:
        self.repo = Path(repo).resolve()
        self.install = install
        self.host = host
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        if log is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            log = name
        self.log = Path(log)
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._client_host}:{self.grpc_port}"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def command(self) -> list[str]:
        return [
            str(self.install.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={self.install.backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=5",
        ]

    def start(self, timeout: float = 180.0) -> TritonServer:
        env = {**os.environ, **self.install.env}
        with open(self.log, "ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            except OSError as error:
                raise SloMoError(f"cannot start {self.install.binary}: {error.strerror}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SloMoError(f"tritonserver stopped while starting: {self.failure()} (log: {self.log})")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise SloMoError(
            f"tritonserver was not ready within {timeout:g} s: {self.failure()} (log: {self.log})"
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def failure(self) -> str:
        """The first error line of the server's log (a model that failed to load says why)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        # A server without a GPU logs CUDA's absence as an error; it is not why it stopped.
        errors = [line for line in lines if line.startswith("E") and "Cuda" not in line]
        for wanted in ("failed to load", "error:", ""):
            for line in errors + [line for line in lines if line.startswith("error:")]:
                if wanted in line:
                    text = line.split("] ", 1)[-1].strip().strip('"')
                    return text.encode().decode("unicode_escape", errors="replace").splitlines()[0][:300]
        return lines[-1][:300] if lines else "no output"

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """End the server at once, as a crash would (its Python stubs go with its group)."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, grace: float = 15.0) -> None:
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._signal(signal.SIGKILL)  # stubs that outlived the server

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def choose_backend(requested: str, kind: str, install: ServerInstall) -> str:
    """What runs the graphs: engines need the tensorrt backend; ONNX takes onnxruntime where the
    server has it, else ONNX Runtime behind the Python backend."""
    if requested not in SERVE_BACKENDS:
        raise SloMoError(f"unknown --backend {requested!r}; choose one of {', '.join(SERVE_BACKENDS)}")
    backend = requested
    if requested == "auto":
        if kind == "tensorrt":
            backend = "tensorrt"
        else:
            backend = "onnxruntime" if "onnxruntime" in install.backends else "python"
    if backend not in install.backends and not (backend == "python" and "python" in install.backends):
        have = ", ".join(sorted(install.backends)) or "none"
        raise SloMoError(f"the {install.label} has no {backend} backend (it has: {have})")
    if "python" not in install.backends:
        raise SloMoError(f"the {install.label} has no python backend, which the pair model needs")
    return backend


@contextlib.contextmanager
def serving(
    model_dir: str | os.PathLike,
    options: RepoOptions,
    install: ServerInstall,
    repo: str | os.PathLike | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    host: str = "127.0.0.1",
) -> Iterator[TritonServer]:
    """A running server for `model_dir`; the repository goes in `repo` (kept) or a temporary
    folder (removed afterwards)."""
    scratch = None
    if repo is None:
        scratch = Path(tempfile.mkdtemp(prefix="slomo-triton-repo-"))
        repo = scratch / "models"
    try:
        write_repository(model_dir, repo, options)
        server = TritonServer(repo, install, http_port, grpc_port, host)
        try:
            yield server.start()
        finally:
            server.stop()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def serve(
    model_dir: str | os.PathLike,
    options: RepoOptions,
    backend: str = "auto",
    tritonserver: str | os.PathLike | None = None,
    server_env: str | os.PathLike | None = None,
    repo: str | os.PathLike | None = None,
    http_port: int = 8000,
    grpc_port: int = 8001,
    host: str = "127.0.0.1",
    say: Callable[[str], None] = print,
) -> None:
    """`slomo serve`: run until Ctrl-C (or SIGTERM), then stop the server and clean up."""
    manifest = read_manifest(model_dir)
    install = locate_server(tritonserver, server_env)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: object) -> None:
        raise Interrupted("stopped")

    try:
        options.backend = choose_backend(backend, manifest.kind, install)
        if options.backend == "python" and options.kind == "auto":
            say(
                "note: this tritonserver has no onnxruntime backend: the graphs run ONNX Runtime on "
                "the CPU behind its Python backend"
            )
        signal.signal(signal.SIGTERM, terminate)
        with serving(model_dir, options, install, repo, http_port, grpc_port, host) as server:
            name = model_names(options.name)["pair"]
            say(
                f"serving {model_dir} as model {name!r} ({options.backend} backend, {install.label}) at "
                f"{server.http_url} and {server.grpc_url}; log {server.log}; Ctrl-C stops"
            )
            say(f"try: slomo interpolate IN.mp4 -o OUT.mp4 --server {server.http_url}")
            try:
                while server.process is not None and server.process.poll() is None:
                    time.sleep(0.5)
            except Interrupted:
                say("stopping the server")
                return
            raise SloMoError(f"tritonserver exited ({server.failure()}; log: {server.log})")
    finally:
        signal.signal(signal.SIGTERM, previous)
        install.cleanup()
