"""The PyTorch Super SloMo network and its checkpoints."""

from superslomo.model.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    file_sha256,
    inspect_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from superslomo.model.slomo import MEAN, ModelConfig, SuperSloMo, flow_coefficients, super_slomo
from superslomo.model.unet import UNet
from superslomo.model.warp import CONVENTIONS, backwarp, backwarp_exact, backwarp_reference, sampling_grid

__all__ = [
    "CONVENTIONS",
    "MEAN",
    "CheckpointError",
    "CheckpointInfo",
    "ModelConfig",
    "SuperSloMo",
    "UNet",
    "backwarp",
    "backwarp_exact",
    "backwarp_reference",
    "file_sha256",
    "flow_coefficients",
    "inspect_checkpoint",
    "load_checkpoint",
    "sampling_grid",
    "save_checkpoint",
    "super_slomo",
]
