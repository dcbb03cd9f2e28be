"""Distributed SR training on Ray Train: Ray Data makes random HR patches, TorchTrainer runs SRTrainer steps.

Re-running with the same ``name`` and ``run.storage_path`` resumes from the latest checkpoint (Ray Train V2
restores a run by its storage path and name); worker failures restart from the last checkpoint up to
``run.max_failures`` times.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
import yaml
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from srcore.train.config import ConfigError, TrainConfig, check_locations, from_dict
from srcore.train.loop import SRTrainer

from .cluster import quiet_ray_data
from .distill import distillation_dataset
from .faults import train_dump_folder, training_fault
from .progress import eta
from .storage import Store, is_uri, join, store_of
from .train_data import training_dataset

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
# Ray Train V2 prints a worker's print() twice (stdout and its log file); a logger's records once
log = logging.getLogger("srcore.train")


# --------------------------------------------------------------------------- the worker loop


def mean_over_ranks(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms averaged over all workers (one all-reduce), so the log shows the run, not rank 0's shard."""
    if not terms:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
        values /= torch.distributed.get_world_size()
    return dict(zip(terms, values.tolist(), strict=True))


def train_loop_per_worker(config: dict) -> None:
    cfg: TrainConfig = from_dict(TrainConfig, config)
    log.setLevel(logging.INFO)
    quiet_ray_train()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    device = ray.train.torch.get_device()
    trainer = SRTrainer(cfg, device, wrap=ray.train.torch.prepare_model, rank=rank, world_size=world)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder) / STATE_FILE)
        if rank == 0:
            log.info(f"[srcore] resumed {cfg.name} at iteration {trainer.iteration}")
    writer = None
    if rank == 0:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(cfg.log_dir)  # made absolute on the driver (prepare_run)
    shard = ray.train.get_dataset_shard("train")
    start, start_iter, timing = time.perf_counter(), trainer.iteration, False
    while trainer.iteration < cfg.iterations:
        batches = 0
        # patches of one image arrive together: a buffer of many batches mixes images within each batch
        for batch in shard.iter_batches(batch_size=cfg.data.batch_size, batch_format="numpy", drop_last=True,
                                        local_shuffle_buffer_size=32 * cfg.data.batch_size):
            if trainer.iteration >= cfg.iterations:
                break
            batches += 1
            training_fault(cfg.fault, rank, trainer.iteration, ray.get_runtime_context().get_node_id())
            terms = trainer.step(batch)
            it = trainer.iteration
            if not timing:  # time from the first finished step: excludes start-up and data warm-up
                start, start_iter, timing = time.perf_counter(), it, True
            log_now = it % cfg.log_every == 0 or it == cfg.iterations
            if log_now:
                values = mean_over_ranks(terms)  # every rank joins; rank 0 logs
            if writer is not None and log_now:
                rate = (it - start_iter) / max(time.perf_counter() - start, 1e-9)
                lr = trainer.opt_g.param_groups[0]["lr"]
                for key, value in values.items():
                    writer.add_scalar(key, value, it)
                writer.add_scalar("lr/generator", lr, it)
                log.info(progress_line(it, cfg.iterations, values, lr, rate))
            if it % cfg.checkpoint_every == 0 or it == cfg.iterations:
                rate = (it - start_iter) / max(time.perf_counter() - start, 1e-9)
                throughput = {"throughput/it_per_s": rate,
                              "throughput/samples_per_s": rate * cfg.data.batch_size * world}
                report(trainer, cfg, {**terms, **throughput}, rank, writer)
        if batches == 0:
            raise RuntimeError(f"worker {rank} got no batch of {cfg.data.batch_size} patches: the dataset is too "
                               f"small for {world} workers; lower data.batch_size or raise data.patches_per_image")
    if rank == 0 and cfg.export:
        export(trainer, cfg)
    dump = train_dump_folder()  # a drill's: each rank's final weights and node
    if dump:
        state = {"generator": trainer.g_module.state_dict(), "node": ray.get_runtime_context().get_node_id(),
                 "iteration": trainer.iteration, "segments": trainer.segments}
        if trainer.gan:
            state["discriminator"] = trainer.d_module.state_dict()
        folder = Path(dump) / cfg.name
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / f"rank{rank}.pt")
    if writer is not None:
        writer.close()


def report(trainer: SRTrainer, cfg: TrainConfig, terms: dict, rank: int, writer) -> None:
    """Every worker reports (a barrier); rank 0 adds validation metrics and the checkpoint."""
    it = trainer.iteration
    metrics = {"iteration": it, **{k: float(v) for k, v in terms.items()}}
    if rank != 0:
        ray.train.report(metrics)
        return
    if (cfg.data.val or cfg.data.teacher) and (it % cfg.val_every == 0 or it == cfg.iterations):
        scores = {}
        if cfg.data.val:
            with tempfile.TemporaryDirectory() as samples:
                scores = trainer.validate(cfg.data.val, samples=Path(samples))
                copy_folder(Path(samples), join(cfg.run_dir, "samples", f"{it:07d}"))
        if cfg.data.teacher:
            scores.update(validate_holdout(trainer, cfg))
        metrics.update(scores)
        for key, value in scores.items():
            writer.add_scalar(key, value, it)
        log.info(f"[srcore] validation at {it}: " + " ".join(f"{k.removeprefix('val/')} {v:.4f}"
                                                              for k, v in scores.items()))
    with tempfile.TemporaryDirectory() as folder:
        # the EMA generator as a model file `srcore upscale --model` loads, beside the resumable state
        write_file(trainer.export(Path(folder) / "net_g.safetensors", name=f"{cfg.name}@{it}"),
                   join(cfg.run_dir, f"net_g_{it}.safetensors"))
    with tempfile.TemporaryDirectory() as folder:
        trainer.save(Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


HOLDOUT_FILE = "holdout.json"


def validate_holdout(trainer: SRTrainer, cfg: TrainConfig) -> dict[str, float]:
    """Distillation: the EMA generator on the held-out pairs (images never trained on, degraded the same way),
    recorded per iteration in ``<run_dir>/holdout.json`` with the best iteration so far (highest PSNR against
    the teacher): the checkpoint to choose, ``net_g_<best>.safetensors``. Evaluation sets never choose."""
    from .distill import load_pairs, read_pairs_file

    keys = read_pairs_file(cfg)["holdout"]
    if not keys:
        return {}
    if getattr(trainer, "holdout", None) is None:
        trainer.holdout = load_pairs(cfg.data.teacher.cache, keys)
    scores = trainer.validate_pairs(*trainer.holdout)
    run = Store(cfg.run_dir)
    path = run.path(HOLDOUT_FILE)
    record = json.loads(run.read(path)) if run.exists(path) else {}
    history = [h for h in record.get("history", []) if h["iteration"] != trainer.iteration]
    history.append({"iteration": trainer.iteration, **{k.removeprefix("val/holdout/"): round(v, 4)
                                                      for k, v in scores.items()}})
    best = max(history, key=lambda h: h["psnr_teacher"])
    record = {"pairs": len(keys), "history": sorted(history, key=lambda h: h["iteration"]), "best": best,
              "best_model": f"net_g_{best['iteration']}.safetensors"}
    run.write_atomic(path, json.dumps(record, indent=1).encode())
    return scores


def export(trainer: SRTrainer, cfg: TrainConfig) -> None:
    with tempfile.TemporaryDirectory() as folder:
        write_file(trainer.export(Path(folder) / "model.safetensors"), cfg.export)
    log.info(f"[srcore] exported EMA generator to {cfg.export}")


def write_file(local: Path, location: str) -> None:
    """Copy a local file to a path or bucket key, atomically (readers never see part of it)."""
    store, path = store_of(location)
    store.write_atomic(path, local.read_bytes())


def copy_folder(local: Path, location: str) -> None:
    for file in sorted(local.iterdir()):
        write_file(file, join(location, file.name))


def progress_line(it: int, total: int, values: dict[str, float], lr: float, rate: float) -> str:
    """One log line: iteration, loss terms, learning rate, speed and time left."""
    terms = " ".join(f"{k.removeprefix('loss/')} {v:.4f}" for k, v in values.items())
    return f"[srcore] it {it}/{total} | {terms} | lr {lr:.2e} | {rate:.2f} it/s | ETA {eta(total - it, rate)}"


# --------------------------------------------------------------------------- the driver


def storage_for(location: str) -> tuple[str, object | None]:
    """RunConfig storage: an absolute local path, or a bucket path with the store's pyarrow filesystem (its
    endpoint and retries)."""
    if is_uri(location):
        fs, path = Store(location).arrow_filesystem()
        return path, fs
    return str(Path(location).resolve()), None


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        out.update(_flat(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs between two configs (as dicts)."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def prepare_run(cfg: TrainConfig, mode: str = "auto") -> tuple[TrainConfig, list[str] | None]:
    """On the driver, before Ray starts: paths made absolute and checked, the run folder ``cfg.run_dir`` made,
    ``config.yaml`` written as run. ``mode``: ``auto`` resumes a run that exists, ``resume`` requires one,
    ``fresh`` moves an existing run folder aside (``<name>-archived-<time>``) and starts over.

    Returns the config and, when resuming, the settings that changed since the run's last start (else None).
    """
    if mode not in ("auto", "resume", "fresh"):
        raise ValueError(f"mode must be auto, resume or fresh, got {mode!r}")
    cfg = cfg.with_absolute_paths()
    check_locations(cfg)
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise ConfigError("training logs need tensorboardX: pip install 'srcore[train]'") from None
    run = Store(cfg.run_dir)
    config_path = run.path(CONFIG_FILE)
    exists = run.exists(config_path)
    if mode == "resume" and not exists:
        raise ConfigError(f"--resume: no run to resume at {cfg.run_dir}")
    changes = None
    if exists and mode == "fresh":
        if is_uri(cfg.run_dir):
            raise ConfigError(f"--fresh: {cfg.run_dir} is in a bucket; give the run a new name instead")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        Path(run.root).rename(f"{run.root}-archived-{stamp}")
        log.warning(f"[srcore] --fresh: the earlier run moved to {run.root}-archived-{stamp}")
    as_run = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if exists and mode != "fresh":
        before = yaml.safe_load(run.read(config_path)) or {}
        changes = config_changes(before, yaml.safe_load(as_run))  # both through YAML: tuples read as lists
        if mode == "auto" and before.get("iterations") != cfg.iterations:
            raise ConfigError(
                f"the run in {cfg.run_dir} was started for iterations={before.get('iterations')}, and this "
                f"config says iterations={cfg.iterations}: pass --resume to continue that run to "
                f"{cfg.iterations}, or --fresh to move it aside and start over (or name this run otherwise: "
                "name=...)")
    run.write_atomic(config_path, as_run.encode())  # (a local run folder is made on the way)
    return cfg, changes


def quiet_ray_train() -> None:
    """Ray Train logs every report and checkpoint at INFO on the worker, under loggers named by file path;
    our own line per interval says the same in one line."""
    for name in list(logging.root.manager.loggerDict):
        if "/ray/train/" in name or name.startswith("ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_training(cfg: TrainConfig) -> ray.train.Result:
    """Fit ``cfg`` (from :func:`prepare_run`) on the connected Ray cluster; the run in ``cfg.run_dir`` resumes
    from its latest checkpoint if it has one."""
    cfg = cfg.with_absolute_paths()
    quiet_ray_data()
    storage_path, storage_fs = storage_for(cfg.run.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(num_workers=cfg.run.num_workers, use_gpu=cfg.run.use_gpu,
                                     resources_per_worker=cfg.run.resources_per_worker or None),
        run_config=RunConfig(name=cfg.name, storage_path=storage_path, storage_filesystem=storage_fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cfg.run.max_failures)),
        datasets={"train": distillation_dataset(cfg) if cfg.data.teacher else training_dataset(cfg)},
    )
    return trainer.fit()
