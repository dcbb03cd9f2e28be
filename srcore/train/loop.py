"""One readable GAN training step and the state around it (no Ray here; pipelines/train.py drives it).

Generator G and discriminator D are wrapped by the caller (DDP under Ray Train). D is wrapped with
``broadcast_buffers=False`` and its training pass sees real and fake in one batch, so BatchNorm and
spectral-norm buffers are never modified between a forward and its backward. G's adversarial term runs D's
unwrapped module with D frozen, so no DDP reduction hooks fire for D during G's step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..archs.registry import create_model
from ..degrade import bicubic_degrade, real_esrgan_degrade, usm_sharpen
from ..evaluation import evaluate_set, list_images, model_upscaler
from ..losses import GeneratorLoss, PerceptualLoss, discriminator_loss, pixel_loss
from ..weights import load_model, load_weights_into, save_model
from .config import TrainConfig
from .pool import PairPool

Wrap = Callable[..., nn.Module]


def _identity(model: nn.Module, **_: object) -> nn.Module:
    return model


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    o = cfg.optim
    if o.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.iterations, eta_min=o.min_lr)
    if o.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=o.milestones, gamma=o.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class SRTrainer:
    """Models, optimizers, schedulers, EMA and the step of one worker.

    Args:
        cfg: the run's configuration.
        device: this worker's device.
        wrap: wraps a module for data parallelism, e.g. ``ray.train.torch.prepare_model``; called as
            ``wrap(module, parallel_strategy_kwargs={...})``. Identity for single-process use.
        rank, world_size: this worker's place, for distinct degradation seeds per worker.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, wrap: Wrap = _identity, rank: int = 0,
                 world_size: int = 1):
        self.cfg, self.device, self.rank, self.world_size = cfg, device, rank, world_size
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        generator = create_model(cfg.generator.name, **cfg.generator.kwargs)
        if cfg.generator.pretrained:
            source = load_model(cfg.generator.pretrained)
            load_weights_into(generator, source.state_dict(), source=cfg.generator.pretrained)
        if generator.descriptor.scale != cfg.data.scale:
            raise ValueError(f"generator {cfg.generator.name} is x{generator.descriptor.scale}, "
                             f"but data.scale is {cfg.data.scale}")
        self.g_module = generator.to(device)
        self.ema = AveragedModel(self.g_module, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.g = wrap(self.g_module)
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.g_module.parameters(), lr=o.lr_g, betas=o.betas, weight_decay=o.weight_decay)
        self.sched_g = make_scheduler(self.opt_g, cfg)
        self.gan = cfg.stage == "gan"
        if self.gan:
            self.d_module = create_model(cfg.discriminator.name, **cfg.discriminator.kwargs).to(device)
            self.d = wrap(self.d_module, parallel_strategy_kwargs={"broadcast_buffers": False})
            self.opt_d = torch.optim.Adam(self.d_module.parameters(), lr=o.lr_d, betas=o.betas,
                                          weight_decay=o.weight_decay)
            self.sched_d = make_scheduler(self.opt_d, cfg)
        if cfg.stage in ("gan", "perceptual"):
            perceptual = None
            if cfg.loss.perceptual:
                perceptual = PerceptualLoss(cfg.loss.perceptual_layers, weights_path=cfg.vgg.weights,
                                            random_init=cfg.vgg.random_init, backbone=cfg.vgg.backbone).to(device)
            self.g_loss = GeneratorLoss(cfg.loss, perceptual)
        # the pool is not checkpointed (nor is BasicSR's): a resumed run refills it
        self.pool = PairPool(cfg.data.pair_pool, seed=cfg.seed * 7919 + rank) if cfg.data.pair_pool else None
        self.iteration = 0
        self.segments: list[int] = [0]  # the iteration each attempt started at: [0, 4] = resumed at 4
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16,
                             enabled=cfg.bf16 and device.type == "cuda")

    # ----------------------------------------------------------------- data

    def make_pair(self, batch: np.ndarray | dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, P, P, 3) uint8 HR patches -> (LR, target) float tensors on the device; LR made here, on the device.
        A distillation batch, ``{"lr": (N, p, p, 3), "target": (N, P, P, 3)}`` uint8, is taken as it is."""
        if isinstance(batch, dict) and "lr" in batch:
            return _tensor(batch["lr"], self.device), _tensor(batch["target"], self.device)
        hr = _tensor(batch["hr"] if isinstance(batch, dict) else batch, self.device)
        scale = self.cfg.data.scale
        if self.cfg.data.degradation == "realesrgan":
            seed = (self.cfg.seed * 1_000_003 + self.iteration) * self.world_size + self.rank
            lr = real_esrgan_degrade(hr, scale, self.cfg.data.degradations, seed=seed)
        else:
            lr = bicubic_degrade(hr, scale)
        target = usm_sharpen(hr) if self.cfg.data.usm_sharpen else hr
        if self.pool is not None:
            lr, target = self.pool.exchange(lr, target)
        return lr, target

    # ----------------------------------------------------------------- the step

    def step(self, batch: np.ndarray | dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """One iteration on a batch of HR patches (or distillation pairs, see :meth:`make_pair`). Returns detached
        loss terms (no device sync here)."""
        lr, hr = self.make_pair(batch)
        self.g.train()
        warming_up = self.gan and self.iteration < self.cfg.d_warmup  # G is not updated: no graph for it
        with torch.autocast(**self.autocast), torch.set_grad_enabled(not warming_up):
            sr = self.g(lr)
        sr = sr.float()
        if self.cfg.stage == "psnr":
            loss = pixel_loss(sr, hr, self.cfg.loss.pixel_criterion)
            terms = {"loss/pixel": loss.detach()}
            self._update(self.opt_g, loss, self.g_module)
        elif self.cfg.stage == "perceptual":
            total, g_terms = self.g_loss(sr, hr)
            self._update(self.opt_g, total, self.g_module)
            terms = {**{f"loss/{k}": v for k, v in g_terms.items()}, "loss/g_total": total.detach()}
        else:
            terms = self._gan_step(sr, hr)
        if not warming_up:
            self.sched_g.step()
        self.ema.update_parameters(self.g_module)
        self.iteration += 1
        return terms

    def _gan_step(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.cfg.loss
        terms: dict[str, torch.Tensor] = {}
        # generator: D frozen and unwrapped; during the warm-up D learns the pretrained G's outputs first
        if self.iteration >= self.cfg.d_warmup:
            self.d_module.requires_grad_(False)
            with torch.autocast(**self.autocast):
                fake_logits = self.d_module(sr).float()
                real_logits = self.d_module(hr).float().detach() if w.relativistic else None
            g_total, g_terms = self.g_loss(sr, hr, fake_logits, real_logits)
            self._update(self.opt_g, g_total, self.g_module)
            terms = {**{f"loss/{k}": v for k, v in g_terms.items()}, "loss/g_total": g_total.detach()}
        # discriminator: real and fake in one pass through the DDP wrapper
        self.d_module.requires_grad_(True)
        self.d.train()
        with torch.autocast(**self.autocast):
            logits = self.d(torch.cat([hr, sr.detach()])).float()
        real_logits, fake_logits = logits.split(hr.shape[0])
        d_loss = discriminator_loss(real_logits, fake_logits, w.gan_type, w.relativistic)
        self._update(self.opt_d, d_loss, self.d_module)
        self.sched_d.step()
        return {**terms, "loss/d": d_loss.detach(), "d/real_logit": real_logits.detach().mean(),
                "d/fake_logit": fake_logits.detach().mean()}

    def _update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)
        optimizer.step()

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict:
        """Everything needed to resume exactly; loadable with ``torch.load(weights_only=True)``."""
        np_state = np.random.get_state()
        state = {
            "iteration": self.iteration,
            "segments": list(self.segments),
            "generator": self.g_module.state_dict(), "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]},
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.gan:
            state.update(discriminator=self.d_module.state_dict(), opt_d=self.opt_d.state_dict(),
                         sched_d=self.sched_d.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.segments = [int(s) for s in state.get("segments", [0])] + [self.iteration]
        self.g_module.load_state_dict(state["generator"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.gan and "discriminator" in state:
            self.d_module.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(_tuplify(rng["python"]))
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save(self, path: Path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: Path) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    # ----------------------------------------------------------------- validation and export

    @property
    def ema_model(self) -> nn.Module:
        return self.ema.module

    def validate(self, folders: list[str], samples: Path | None = None) -> dict[str, float]:
        """PSNR, SSIM, LR-consistency and NIQE of the EMA generator on HR folders (bicubic LR, paper conventions).
        ``samples``: a folder that receives the first :data:`SAMPLES_PER_SET` outputs of each set as PNGs."""
        metrics: dict[str, float] = {}
        # PyTorch: an OpenVINO conversion at every validation would cost more than it saves
        upscale = model_upscaler(self.ema_model, self.device, runtime="torch")
        for folder in folders:
            name = Path(folder).name if Path(folder).name != "HR" else Path(folder).parent.name
            names = iter(list_images(Path(folder))[:SAMPLES_PER_SET])
            result = evaluate_set(saving(upscale, names, samples, name) if samples else upscale, Path(folder),
                                  self.cfg.data.scale, progress=False)
            for key in ("psnr", "ssim", "lr_psnr", "niqe"):
                metrics[f"val/{name}/{key}"] = result.mean(key)
        return metrics

    @torch.inference_mode()
    def validate_pairs(self, lr: np.ndarray, target: np.ndarray, batch: int = 16) -> dict[str, float]:
        """The EMA generator on held-out distillation pairs ((N, p, p, 3) LR, (N, P, P, 3) teacher outputs,
        uint8): PSNR against the teacher's outputs (8-bit RGB, the pairs pooled) and the mean L1, in levels."""
        model = self.ema_model.eval()
        squared, absolute, count = 0.0, 0.0, 0
        for i in range(0, len(lr), batch):
            sr = (model(_tensor(lr[i:i + batch], self.device)).float().clamp(0, 1) * 255).round()
            diff = sr - _tensor(target[i:i + batch], self.device) * 255
            squared += float(diff.square().sum())
            absolute += float(diff.abs().sum())
            count += diff.numel()
        mse = squared / max(count, 1)
        psnr = 10 * np.log10(255 ** 2 / mse) if mse > 0 else float("inf")
        return {"val/holdout/psnr_teacher": psnr, "val/holdout/l1": absolute / max(count, 1)}

    def export(self, path: str | Path, name: str | None = None) -> Path:
        """The EMA generator as safetensors with its descriptor (``srcore.load_model`` reads it)."""
        model = create_model(self.cfg.generator.name, **self.cfg.generator.kwargs)
        model.load_state_dict({k: v.detach().cpu() for k, v in self.ema_model.state_dict().items()})
        return save_model(model, path, name=name or self.cfg.name)


SAMPLES_PER_SET = 3


def saving(upscale, names, folder: Path, prefix: str):
    """``upscale`` that also writes its outputs for the images ``names`` (in scoring order) into ``folder``."""
    def run(lr: np.ndarray) -> np.ndarray:
        sr = upscale(lr)
        name = next(names, None)
        if name is not None:
            Image.fromarray(sr.squeeze()).save(folder / f"{prefix}_{name.stem}.png")
        return sr

    return run


def _tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float() / 255


def _tuplify(value):
    """weights_only loading turns tuples into lists; random.setstate wants its nested tuples back."""
    return tuple(_tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value
