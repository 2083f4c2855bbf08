"""Checkpoint I/O: the public Super SloMo format (read safely) and the project's safetensors format.

Checkpoints are untrusted data. The public format is a pickle, so it is read with PyTorch's
weights-only unpickler and an allowlist that adds only the datetime types its metadata uses; any
other global (os.system, builtins.eval, ...) is refused before anything is called.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from superslomo.contracts.files import atomic_path, file_sha256
from superslomo.errors import SloMoError
from superslomo.model.slomo import ModelConfig, SuperSloMo

OWN_FORMAT = "superslomo-trt"
OWN_FORMAT_VERSION = 1
_SAFE_METADATA_GLOBALS = [datetime.datetime, datetime.date, datetime.timedelta, datetime.timezone]


class CheckpointError(SloMoError):
    pass


@dataclass
class CheckpointInfo:
    path: str
    format: str  # "public" (state_dictFC/state_dictAT pickle) or "safetensors"
    width: int
    parameters: int
    sha256: str
    dtype: str
    metadata: dict[str, Any] = field(default_factory=dict)
    warp: str = "reference"  # the backward warp's convention (model/warp.py)


def _detect_format(path: Path) -> str:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint is a directory, expected a file: {path}")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 8:
        raise CheckpointError(f"not a checkpoint (file is {len(head)} bytes): {path}")
    # safetensors first: its 8-byte header length can start with 0x80, the pickle protocol byte.
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < header_len < path.stat().st_size:
        return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "public"
    raise CheckpointError(f"not a Super SloMo checkpoint (unknown file format): {path}")


def _unpickle_public(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(_SAFE_METADATA_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # PyTorch's message is several paragraphs; keep the line that names the refused global.
        first = next((line for line in str(error).splitlines() if "GLOBAL" in line or "global" in line), "")
        detail = first.strip() or str(error).splitlines()[0]
        raise CheckpointError(
            f"refused to load {path}: it asks to run code that is not plain data ({detail})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        message = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or corrupt?): {message}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"not a Super SloMo checkpoint: {path} holds a {type(data).__name__}")
    missing = [key for key in ("state_dictFC", "state_dictAT") if key not in data]
    if missing:
        raise CheckpointError(f"not a Super SloMo checkpoint: {path} lacks {', '.join(missing)}")
    return data


def _width_from_state(state: dict[str, torch.Tensor], path: Path) -> int:
    weight = state.get("flow_net.conv1.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise CheckpointError(f"checkpoint {path} has no usable flow_net conv1.weight")
    return int(weight.shape[0])


def _build_model(state: dict[str, torch.Tensor], config: ModelConfig, path: Path) -> SuperSloMo:
    model = SuperSloMo(width=config.width, warp=config.warp)
    bad = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: {bad[0]} is not a tensor")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"checkpoint {path} does not match the network: {'; '.join(parts)}")
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise CheckpointError(
                f"checkpoint {path}: {key} has shape {tuple(state[key].shape)}, "
                f"the network expects {tuple(value.shape)}"
            )
        if not state[key].is_floating_point():
            raise CheckpointError(f"checkpoint {path}: {key} has dtype {state[key].dtype}, expected float")
        if not torch.isfinite(state[key]).all():
            raise CheckpointError(f"checkpoint {path}: {key} contains NaN or Inf")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def _read(path: Path) -> tuple[str, dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    kind = _detect_format(path)
    if kind == "public":
        data = _unpickle_public(path)
        fc, at = data["state_dictFC"], data["state_dictAT"]
        if not isinstance(fc, dict) or not isinstance(at, dict):
            raise CheckpointError(f"checkpoint {path}: state_dictFC/state_dictAT are not state dicts")
        state = {f"flow_net.{k}": v for k, v in fc.items()}
        state.update({f"interp_net.{k}": v for k, v in at.items()})
        metadata = {k: v for k, v in data.items() if k not in ("state_dictFC", "state_dictAT")}
        # The public weights were trained with the reference warp; the format has no place to say
        # otherwise, so it is never anything else.
        return kind, state, ModelConfig(width=_width_from_state(state, path), warp="reference"), metadata
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or corrupt?): {error}") from None
    if header.get("format") != OWN_FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a superslomo-trt checkpoint")
    try:
        config = ModelConfig.from_dict(json.loads(header.get("config", "{}")))
        metadata = json.loads(header.get("metadata", "{}"))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} has a bad config: {error}") from None
    return kind, state, config, metadata


def load_checkpoint(path: str | os.PathLike) -> SuperSloMo:
    """Load a public-format or own-format checkpoint into a CPU model in eval mode.

    The model's warp convention is the checkpoint's: "reference" for the public format and for
    own-format files whose config predates the field (demo16 among them)."""
    path = Path(path)
    _, state, config, _ = _read(path)
    return _build_model(state, config, path)


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    path = Path(path)
    kind, state, config, metadata = _read(path)
    model = _build_model(state, config, path)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    return CheckpointInfo(
        path=str(path),
        format=kind,
        width=config.width,
        parameters=sum(p.numel() for p in model.parameters()),
        sha256=file_sha256(path),
        dtype="/".join(dtypes),
        metadata=metadata,
        warp=config.warp,
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 16 else f"tensor{tuple(value.shape)}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_checkpoint(
    model: SuperSloMo,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write the project's format: safetensors with the config (width, warp convention) and
    metadata in its header."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": OWN_FORMAT,
        "format_version": str(OWN_FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "metadata": json.dumps(_json_safe(metadata or {})),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)
        _canonical_header(tmp)


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with its keys sorted. safetensors writes the metadata map in
    no fixed order, so the same weights and metadata saved twice got two sha256s, and whatever is
    bound to a checkpoint's sha256 (its scale table, accuracy report) came loose on a re-save."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8-byte alignment
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata as JSON-safe values (datetimes as ISO strings)."""
    return _json_safe(_read(Path(path))[3])
