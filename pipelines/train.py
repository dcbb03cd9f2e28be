"""Distributed SR training on Ray Train: Ray Data makes random HR patches, TorchTrainer runs SRTrainer steps.

Re-running with the same ``name`` and ``run.storage_path`` resumes from the latest checkpoint (Ray Train V2
restores a run by its storage path and name); worker failures restart from the last checkpoint up to
``run.max_failures`` times.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from srcore.train.config import TrainConfig, from_dict
from srcore.train.data import decode_rgb, sample_patches
from srcore.train.loop import SRTrainer

from .storage import filesystem, is_uri, join, list_files, read_bytes, write_bytes_atomic

STATE_FILE = "state.pt"


# --------------------------------------------------------------------------- data


def decode_rows(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Rows of prepared PNG crops, image locations, or already decoded pixels -> RGB uint8 images."""
    if "pixels" in batch:
        return [np.asarray(p).reshape(int(h), int(w), 3)
                for p, h, w in zip(batch["pixels"], batch["height"], batch["width"], strict=True)]
    if "png" in batch:
        return [decode_rgb(bytes(data), str(name)) for data, name in zip(batch["png"], batch["name"], strict=True)]
    images = []
    for location in batch["location"]:
        fs, path = filesystem(str(location))
        images.append(decode_rgb(read_bytes(fs, path), str(location)))
    return images


def decode_batch(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Ray Data batch function for ``cache_decoded``: flat pixel rows (images differ in size)."""
    images = decode_rows(batch)
    return {"pixels": [im.reshape(-1) for im in images], "height": [im.shape[0] for im in images],
            "width": [im.shape[1] for im in images]}


class PatchSampler:
    """Ray Data batch function: images (any form ``decode_rows`` reads) -> augmented random HR patches."""

    def __init__(self, patch_size: int, per_image: int):
        self.patch_size, self.per_image = patch_size, per_image

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng()  # fresh crops every pass over the data
        return {"hr": sample_patches(decode_rows(batch), self.patch_size, self.per_image, rng)}


def is_prepared(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(f"{path}/manifest.json").type.name == "File"


def training_dataset(cfg: TrainConfig) -> ray.data.Dataset:
    """Patches from every ``data.train`` entry: image folders/prefixes, or datasets made by prepare_dataset."""
    parts = []
    for location in cfg.data.train:
        if is_prepared(location):
            fs, path = filesystem(location)
            parts.append(ray.data.read_parquet(f"{path}/shards", filesystem=fs).select_columns(["name", "png"]))
        else:
            _, entries = list_files(location)
            if not entries:
                raise ValueError(f"data.train: no images under {location}")
            prefix = location if is_uri(location) else None
            items = [{"location": join(prefix, e.relative) if prefix else e.path} for e in entries]
            parts.append(ray.data.from_items(items))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if cfg.data.cache_decoded:
        ds = ds.map_batches(decode_batch, batch_size=8).materialize()
    # block-order shuffling is cheap; a full random_shuffle is an all-to-all pass every epoch
    return ds.randomize_block_order().map_batches(PatchSampler(cfg.data.patch_size, cfg.data.patches_per_image),
                                           batch_size=4)


# --------------------------------------------------------------------------- the worker loop


def maybe_inject_fault(cfg: TrainConfig, rank: int, iteration: int) -> None:
    fault = cfg.fault
    if fault.iteration is None or iteration != fault.iteration or rank != fault.rank or fault.marker is None:
        return
    marker = Path(fault.marker)
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"fault injected at iteration {iteration} on rank {rank}\n")
        raise RuntimeError(f"injected fault at iteration {iteration} (fault-tolerance drill)")


def mean_over_ranks(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms averaged over all workers (one all-reduce), so the log shows the run, not rank 0's shard."""
    if not terms:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
        values /= torch.distributed.get_world_size()
    return dict(zip(terms, values.tolist(), strict=True))


def log_dir_for(cfg: TrainConfig) -> Path:
    if cfg.log_dir:
        return Path(cfg.log_dir)
    base = cfg.run.storage_path if not is_uri(cfg.run.storage_path) else "runs"
    return Path(base).resolve() / cfg.name / "logs"


def train_loop_per_worker(config: dict) -> None:
    cfg: TrainConfig = from_dict(TrainConfig, config)
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
            print(f"[srcore] resumed {cfg.name} at iteration {trainer.iteration}", flush=True)
    writer = None
    if rank == 0:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(log_dir_for(cfg)))
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
            maybe_inject_fault(cfg, rank, trainer.iteration)
            terms = trainer.step(batch["hr"])
            it = trainer.iteration
            if not timing:  # time from the first finished step: excludes start-up and data warm-up
                start, start_iter, timing = time.perf_counter(), it, True
            log_now = it % cfg.log_every == 0 or it == cfg.iterations
            if log_now:
                values = mean_over_ranks(terms)  # every rank joins; rank 0 logs
            if writer is not None and log_now:
                rate = (it - start_iter) / max(time.perf_counter() - start, 1e-9)
                for key, value in values.items():
                    writer.add_scalar(key, value, it)
                writer.add_scalar("lr/generator", trainer.opt_g.param_groups[0]["lr"], it)
                print(f"[srcore] it {it}/{cfg.iterations} " + " ".join(f"{k}={v:.4f}" for k, v in values.items())
                      + f" ({rate:.2f} it/s)", flush=True)
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
    dump = os.environ.get("SRCORE_TRAIN_DUMP")  # diagnostics: each rank's final weights and node
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
    if cfg.data.val and (it % cfg.val_every == 0 or it == cfg.iterations):
        scores = trainer.validate(cfg.data.val)
        metrics.update(scores)
        for key, value in scores.items():
            writer.add_scalar(key, value, it)
        print(f"[srcore] validation at {it}: " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        trainer.save(Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def export(trainer: SRTrainer, cfg: TrainConfig) -> None:
    if is_uri(cfg.export):
        with tempfile.TemporaryDirectory() as folder:
            local = trainer.export(Path(folder) / "model.safetensors")
            fs, path = filesystem(cfg.export)
            write_bytes_atomic(fs, path, local.read_bytes())
    else:
        trainer.export(cfg.export)
    print(f"[srcore] exported EMA generator to {cfg.export}", flush=True)


# --------------------------------------------------------------------------- the driver


def storage_for(location: str) -> tuple[str, object | None]:
    """RunConfig storage: an absolute local path, or a bucket path with its filesystem (endpoint-aware)."""
    if is_uri(location):
        fs, path = filesystem(location)
        return path, fs
    return str(Path(location).resolve()), None


def run_training(cfg: TrainConfig) -> ray.train.Result:
    """Fit ``cfg`` on the connected Ray cluster; same name and storage path resume the run."""
    cfg = cfg.with_absolute_paths()
    storage_path, storage_fs = storage_for(cfg.run.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(num_workers=cfg.run.num_workers, use_gpu=cfg.run.use_gpu,
                                     resources_per_worker=cfg.run.resources_per_worker or None),
        run_config=RunConfig(name=cfg.name, storage_path=storage_path, storage_filesystem=storage_fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cfg.run.max_failures)),
        datasets={"train": training_dataset(cfg)},
    )
    return trainer.fit()
