"""Before loading VLMs: does the folder hold a supported model, and do the models fit the device?

A worker that holds several reward models (one per LRM head) checks them before it loads any: the
parameter count comes from the checkpoint's safetensors headers (no weights are read), times the bytes of
the dtype the backend will use, plus an activation headroom; the sum per device is compared with the
device's free memory (CUDA: ``torch.cuda.mem_get_info``; CPU: available RAM). The numbers are estimates:
they decide whether to start, they are not measurements.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from vlmrl.reward_workers.backends.base import BackendError

DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}


def looks_like_hub_id(model: str) -> bool:
    """``org/name`` with no local meaning (a hub id); anything else is treated as a local folder."""
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~")) and not os.path.exists(model)


def check_model_folder(model: str) -> str:
    """The ``model_type`` of a local VLM folder; BackendError if it is missing, an adapter, or not an
    image-text-to-text architecture transformers can load. Hub ids are passed through ("")."""
    if looks_like_hub_id(model):
        return ""
    root = Path(model).expanduser()
    if not root.is_dir():
        raise BackendError(f"model folder {model!r} does not exist")
    if not (root / "config.json").is_file():
        if (root / "adapter_config.json").is_file():
            base = json.loads((root / "adapter_config.json").read_text()).get("base_model_name_or_path", "?")
            raise BackendError(f"{model!r} is a LoRA adapter, not a model: give it as the adapter and its base "
                               f"model ({base}) as the model")
        raise BackendError(f"{model!r} has no config.json: not a transformers checkpoint")
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = json.loads((root / "config.json").read_text()).get("model_type", "")
    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        known = [k for k in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES if k.startswith("qwen")]
        raise BackendError(f"{model!r} is a {model_type or 'unknown'!r} model, not an image-text-to-text VLM "
                           f"transformers can load (e.g. {', '.join(known)})")
    return model_type


def safetensors_numel(path: Path) -> int:
    """Parameter count of one ``.safetensors`` file, read from its header (the weights are not read)."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    total = 0
    for key, meta in header.items():
        if key != "__metadata__":
            count = 1
            for dim in meta["shape"]:
                count *= int(dim)
            total += count
    return total


def folder_numel(folder: str) -> Optional[int]:
    """Parameters stored in a folder's safetensors files (model shards or an adapter); None if it has none."""
    files = sorted(Path(folder).expanduser().glob("*.safetensors")) if os.path.isdir(folder) else []
    return sum(safetensors_numel(f) for f in files) if files else None


@dataclass
class MemoryNeed:
    """What one loaded model (base + its adapters) is estimated to need on its device."""

    device: str
    params: int
    dtype_bytes: int
    headroom: float

    @property
    def bytes(self) -> int:
        return int(self.params * self.dtype_bytes * (1.0 + self.headroom))


def free_bytes(device: str) -> Tuple[Optional[int], str]:
    """Free memory of ``device`` in bytes, or (None, why it cannot be read)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None, "CUDA is not available"
        index = torch.device(device).index
        free, _total = torch.cuda.mem_get_info(torch.cuda.current_device() if index is None else index)
        return int(free), ""
    try:
        import psutil

        return int(psutil.virtual_memory().available), ""
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, ""
    except OSError:
        pass
    return None, "available RAM cannot be read (no psutil, no /proc/meminfo)"


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB"
