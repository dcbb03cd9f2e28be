"""Reading and writing model weights: official ``.pth`` files, safetensors, and srcore's own saved models.

No pickle code ever runs: ``.pth`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .archs.architecture import detect_architecture
from .archs.foreign import load_with_spandrel
from .archs.registry import DEFAULT_REALISM, DEFAULT_UPSCALE_MODEL, VARIANTS, build, get_variant, realism_pair
from .atomic import atomic_path
from .interpolate import interpolate_models
from .model_errors import WeightsError
from .zoo import weights_path

# Official release files nest the weights under one of these, EMA weights first (what Real-ESRGAN infers with).
NESTED_KEYS = ("params_ema", "params", "state_dict", "model")
METADATA_KEY = "srcore"


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Read a weights file into a flat state dict and srcore metadata (``None`` for foreign files).

    ``.safetensors`` are read directly; anything else goes through ``torch.load(weights_only=True)``
    and is unwrapped from ``params_ema``/``params``/``state_dict``/``model`` and a DDP ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: weights file is empty (0 bytes)")
    if path.suffix == ".safetensors":
        try:

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            sd = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
        info = json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else None
        prefix = (info or {}).get("key_prefix", "")  # see SRVGGNetCompact.saved_key_prefix
        if prefix:
            sd = {k.removeprefix(prefix): v for k, v in sd.items()}
        return sd, info
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        raise WeightsError(f"{path}: cannot read weights file, it may be truncated or corrupt "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    info = None
    if isinstance(obj, dict) and METADATA_KEY in obj and "state_dict" in obj:
        info = obj[METADATA_KEY]
    for key in NESTED_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors (optionally under {'/'.join(NESTED_KEYS)})")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, info


def load_weights_into(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Strictly load ``state_dict`` into ``model``, casting (e.g. fp16-stored) floats to the model's dtype.

    Raises ``WeightsError`` naming ``source`` and the first missing, unexpected or mis-shaped keys.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    # derived buffers (SwinIR's attn_mask) are dropped by the model's own load hooks
    unexpected = [k for k in state_dict if k not in own and not k.endswith("attn_mask")]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_first(unexpected)}")
        raise WeightsError(f"{source}: does not match {type(model).__name__}; " + "; ".join(parts))
    wrong = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if state_dict[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{source}: shape mismatch for {type(model).__name__}: {_first(wrong)}")
    cast = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(cast, strict=True)


def _first(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_model(path_or_name: str | os.PathLike, *, arch: str | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, download: bool | None = None, **hparams) -> nn.Module:
    """Load a model from a weights file (``.pth``, ``.safetensors``) or a registered variant name.

    The architecture and hyper-parameters come, in order of preference, from ``arch``/``hparams``
    given here, srcore metadata saved with the file, or detection from the state dict. The model is
    returned in eval mode on ``device`` in ``dtype``, with ``model.descriptor`` describing it.
    A registered name with published weights is downloaded into the cache unless ``download`` is False
    (default: allowed unless ``$SRCORE_OFFLINE`` is set). A name's file, bundled or cached, must have the
    registry's SHA-256: otherwise ``WeightsError`` names the file and both digests.
    """
    path = Path(path_or_name)
    if not path.exists():
        name = str(path_or_name)
        try:
            variant = get_variant(name) if not path.suffix else None
        except KeyError as exc:
            raise WeightsError(f"{name}: neither a weights file nor a registered model ({exc.args[0]})") from None
        if variant is None:
            raise WeightsError(f"{path}: no such weights file")
        if download is None:
            download = not os.environ.get("SRCORE_OFFLINE")
        path = weights_path(variant, allow_download=download)
        arch = arch or variant.arch
        hparams = {**variant.kwargs, **hparams}
    state_dict, info = read_state_dict(path)
    if arch is None and info is not None:
        arch, hparams = info["arch"], {**info["hparams"], **hparams}
    if arch is None:
        found = detect_architecture(state_dict)
        if found is None and not hparams:
            foreign = load_with_spandrel({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
            if foreign is not None:
                return foreign.to(device=device, dtype=dtype).eval()
        if found is None:
            raise WeightsError(f"{path}: cannot recognise the architecture from its keys "
                               f"(first keys: {_first(list(state_dict))}); pass arch= and its parameters, "
                               f"or install the 'spandrel' extra for other architectures")
        arch, detected = found
        hparams = {**detected, **hparams}
    model = build(arch, hparams)
    load_weights_into(model, state_dict, source=str(path))
    return model.to(device=device, dtype=dtype).eval()


def save_model(model: nn.Module, path: str | os.PathLike, *, name: str | None = None) -> Path:
    """Write ``model`` as safetensors with its architecture, hyper-parameters and descriptor in the metadata.

    The file is written under a temporary name and renamed, so a crash never leaves a partial file.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: srcore saves models as .safetensors")
    prefix = getattr(model, "saved_key_prefix", "")
    info = {"arch": model.arch_name, "hparams": model.hparams, "descriptor": json.loads(model.descriptor.to_json()),
            "name": name, **({"key_prefix": prefix} if prefix else {})}
    tensors = {prefix + k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(info)})
    return path


def load_upscaling_model(model: str | os.PathLike | None = None, realism: float | None = None
                         ) -> tuple[nn.Module, str]:
    """The model that ``srcore upscale``, the bucket job and the evaluate job run, and its id for provenance and
    reports. No ``model``: the default, the bundled GAN / PSNR pair at ``DEFAULT_REALISM`` (0.5) unless
    ``realism`` is given.

    ``realism`` (0..1), the fidelity-realism knob: for a model with a GAN / PSNR pair (``srcore models``), the
    weights ``realism * GAN + (1 - realism) * PSNR`` (network interpolation, ESRGAN); 0 is the PSNR model
    exactly and 1 the GAN model exactly. The id records it: ``srcore-compact-x4-gan@realism=0.5``.
    """
    if model is None:
        model, realism = DEFAULT_UPSCALE_MODEL, DEFAULT_REALISM if realism is None else realism
    if realism is None:
        return load_model(model), model_id(model)
    if not 0 <= realism <= 1:
        raise ValueError(f"realism must be in 0..1, got {realism}")
    gan, psnr = realism_pair(str(model))
    return interpolate_models(load_model(gan), load_model(psnr), realism), f"{gan}@realism={realism:g}"


def model_id(model: str | os.PathLike) -> str:
    """A stable name for a model in outputs and reports: the registered name, or file name @ content hash."""
    if str(model) in VARIANTS and not Path(model).exists():
        return str(model)
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:12]
    return f"{Path(model).name}@{digest}"
