"""The one storage layer (pipelines.storage.Store): one version rule, one atomic write and one retry policy for
the bucket job, dataset preparation and training alike. The fault-injection test runs preparation and the
training run's reads and writes against the loopback S3 server behind the fault proxy, as the bucket job's
fault test does (test_upscale_hard_inputs)."""

from __future__ import annotations

import io
import os
import pickle
from collections import Counter

import numpy as np
import pyarrow.fs as pafs
import pytest
import yaml
from bucket_helpers import SECRETS, get_object, make_bucket
from fault_proxy import FAULTS, fault_proxy
from PIL import Image

from pipelines.local_s3 import s3_client
from pipelines.storage import Store, join, read_location, store_of
from srcore.upscale import local_version
from srcore.versions import info_version, version_of


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _keys(bucket: str, prefix: str) -> list[str]:
    """Every key under the prefix, hidden ones too, straight from the server."""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_one_version_rule_for_the_cli_the_listing_and_the_store(s3, tmp_path):
    """A local file's version is the same string from ``srcore upscale`` (local_version), the Store's listing,
    Store.version and a conditional write's answer; an object's is its ETag without quotes, from all of them."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a")
    local = Store(str(folder))
    [entry] = local.list()
    assert entry.version == local_version(folder / "a.png") == local.version(entry.path)
    assert entry.version.startswith("mtime:") and entry.version == version_of(mtime=os.stat(entry.path).st_mtime)
    written = local.create_exclusive(local.path("lease.json"), b"{}")
    assert written == local.version(local.path("lease.json")) == local_version(folder / "lease.json")
    assert local.replace_if_version(local.path("lease.json"), b"{1}", written) == \
        local.version(local.path("lease.json"))

    make_bucket("versions", "in", {"a.png": b"a"})
    remote = Store("s3://versions/in")
    etag = s3_client().head_object(Bucket="versions", Key="in/a.png")["ETag"]
    [entry] = remote.list()
    assert entry.version == remote.version(entry.path) == etag.strip('"') and '"' not in entry.version
    written = remote.create_exclusive(remote.path("lease.json"), b"{}")
    assert written == s3_client().head_object(Bucket="versions", Key="in/lease.json")["ETag"].strip('"')
    again = remote.replace_if_version(remote.path("lease.json"), b"{1}", written)
    assert again == remote.version(remote.path("lease.json")) != written
    with pytest.raises(OSError, match="changed since"):
        remote.replace_if_version(remote.path("lease.json"), b"{2}", written)
    # the rule's other inputs: a datetime and ISO text are the same time as its seconds
    from datetime import datetime, timezone

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert version_of(mtime=when) == version_of(mtime="2026-01-02T03:04:05Z") == version_of(mtime=when.timestamp())
    assert info_version({"ETag": '"x"', "LastModified": when}) == "x" and info_version({"mtime": 1.5}) == \
        "mtime:1500000000"


def test_a_store_and_its_arrow_filesystem_travel_as_the_location_without_credentials(s3, monkeypatch):
    """What Ray sends to its workers (a Store, the pyarrow filesystem Ray Data and Ray Train get) carries the
    location only: the worker makes its client from its own environment, and credentials never travel."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    make_bucket("travel", "in", {"a.png": b"a"})
    store = Store("s3://travel/in")
    fs, root = store.arrow_filesystem()
    sent = pickle.dumps((store, fs))
    assert not [value for value in SECRETS.values() if value.encode() in sent]
    store2, fs2 = pickle.loads(sent)
    assert store2.read(store2.path("a.png")) == b"a" and fs2.get_file_info(f"{root}/a.png").size == 1
    with fs2.open_output_stream(f"{root}/b.bin") as f:
        f.write(b"bb")
    assert read_location("s3://travel/in/b.bin") == b"bb"
    assert store_of("s3://travel/in/b.bin")[1] == "travel/in/b.bin"


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_preparation_and_training_read_and_write_through_the_same_fault_injection(s3, shared_ray, monkeypatch,
                                                                                   tmp_path):
    """A quarter of the S3 requests fail (500, 503 SlowDown, connections dropped before or after the server
    acted) while a dataset is prepared from a bucket prefix, and while training reads it (the prepared Parquet
    through the store's pyarrow filesystem, and the raw images) and writes its run: config.yaml, the model of a
    checkpoint, samples, a checkpoint folder through Ray Train's storage filesystem, teacher targets. Everything
    completes, byte for byte, with nothing temporary left behind."""
    from train_helpers import tiny_config

    from pipelines.distill import TeacherCache
    from pipelines.prepare import CropSpec, prepare_dataset
    from pipelines.train import CONFIG_FILE, copy_folder, prepare_run, storage_for, write_file
    from pipelines.train_data import training_dataset
    from srcore.train.config import load_config
    from srcore.train.data import extract_subimages

    rng = np.random.default_rng(0)
    images = {f"{i:04d}.png": rng.integers(0, 256, (h, w, 3), np.uint8)
              for i, (h, w) in enumerate([(100, 130), (60, 60), (48, 90)])}
    make_bucket("prepfault", "hr", {k: _png(v) for k, v in images.items()})
    spec = CropSpec(crop=48, step=24)
    crops = sum(len(extract_subimages(im, spec.crop, spec.step)) for im in images.values())
    files = {"net_g.safetensors": os.urandom(3000), "sample_a.png": _png(images["0001.png"]), "state.pt": b"s" * 999}

    with fault_proxy(os.environ["AWS_ENDPOINT_URL"], rate=0.25, seed=2, kinds=FAULTS) as (url, faults):
        shared_ray(AWS_ENDPOINT_URL=url)  # the Ray Data workers reach S3 through the proxy, and so does the driver
        with monkeypatch.context() as driver:
            driver.setenv("AWS_ENDPOINT_URL", url)
            manifest = prepare_dataset("s3://prepfault/hr", "s3://prepfault/prepared", spec)
            preparing = Counter(faults)

            cfg = load_config(base=tiny_config("faulty", tmp_path, workers=1, log_dir=str(tmp_path / "logs"),
                                               data={"train": ["s3://prepfault/prepared", "s3://prepfault/hr"]},
                                               run={"storage_path": "s3://prepfault/runs"}))
            cfg, changes = prepare_run(cfg)
            patches = training_dataset(cfg).take_all()
            for name, data in files.items():
                (tmp_path / name).write_bytes(data)
            write_file(tmp_path / "net_g.safetensors", join(cfg.run_dir, "net_g_2.safetensors"))
            (tmp_path / "samples").mkdir()
            (tmp_path / "samples" / "a.png").write_bytes(files["sample_a.png"])
            copy_folder(tmp_path / "samples", join(cfg.run_dir, "samples", "0000002"))
            storage_path, storage_fs = storage_for(cfg.run.storage_path)  # what Ray Train uploads checkpoints through
            (tmp_path / "checkpoint").mkdir()
            (tmp_path / "checkpoint" / "state.pt").write_bytes(files["state.pt"])
            checkpoint = f"{storage_path}/{cfg.name}/checkpoint_000000"
            pafs.copy_files(str(tmp_path / "checkpoint"), checkpoint, destination_filesystem=storage_fs)
            restored = pickle.loads(pickle.dumps(storage_fs))  # as the controller and workers get it
            with restored.open_input_stream(f"{checkpoint}/state.pt") as f:
                state = f.read()
            cache = TeacherCache("s3://prepfault/cache")
            pairs = {key: (rng.integers(0, 256, (4, 4, 3), np.uint8), rng.integers(0, 256, (16, 16, 3), np.uint8))
                     for key in ("ab12", "cd34")}
            for key, (lr, target) in pairs.items():
                cache.write(key, lr, target)
            cached = {key: cache.read(key) for key in pairs if cache.has(key)}
    training = Counter(faults) - preparing

    def injected(counts: Counter) -> int:
        return sum(n for kind, n in counts.items() if kind in FAULTS)

    # faults met both the preparation and the training run, and every kind was met
    assert injected(preparing) >= 3 and injected(training) >= 5, (preparing, training)
    assert all(faults[kind] for kind in FAULTS), faults
    # the prepared dataset is whole: every image, every crop, no failure; straight from the server
    assert manifest["failed"] == {} and manifest["image_count"] == 3 and manifest["crop_count"] == crops
    assert yaml.safe_load(get_object("prepfault", "prepared/manifest.json")) == manifest
    shards = [k for k in _keys("prepfault", "prepared") if k.startswith("prepared/shards/")]
    assert sorted(shards) == sorted(f"prepared/shards/{v['shard']}" for v in manifest["images"].values())
    # training read every crop and every raw image: patches_per_image (2) random patches of each
    assert changes is None and len(patches) == 2 * (crops + len(images))
    assert all(p["hr"].shape == (32, 32, 3) and p["hr"].dtype == np.uint8 for p in patches)
    # and its writes are whole
    run_key = cfg.run_dir.removeprefix("s3://prepfault/")
    assert yaml.safe_load(get_object("prepfault", f"{run_key}/{CONFIG_FILE}"))["name"] == "faulty"
    assert get_object("prepfault", f"{run_key}/net_g_2.safetensors") == files["net_g.safetensors"]
    assert get_object("prepfault", f"{run_key}/samples/0000002/a.png") == files["sample_a.png"]
    assert state == files["state.pt"] == get_object("prepfault", "runs/faulty/checkpoint_000000/state.pt")
    assert cached.keys() == pairs.keys()
    assert all(np.array_equal(cached[k][0], lr) and np.array_equal(cached[k][1], t) for k, (lr, t) in pairs.items())
    every = _keys("prepfault", "prepared") + _keys("prepfault", "runs") + _keys("prepfault", "cache")
    assert not [k for k in every if k.endswith(".tmp")], every
    print(f"faults met: preparing {dict(preparing)}, training {dict(training)}")
