"""The bucket job's two stage layouts, without Ray: where each stage runs (``plan_layout``), and the split
layout's data flow (decode task -> actor -> encode task) against the fused layout's, image for image."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
from bucket_helpers import good_images
from PIL import Image

from pipelines.upscale import UpscaleJob, UpscaleWriter, plan
from pipelines.upscale.run import CPU_IMAGES_PER_CALL, GPU_IMAGES_PER_CALL, plan_layout
from pipelines.upscale.stages import encode_and_write, read_and_decode
from srcore.imageio import decode
from srcore.options import EngineOptions
from srcore.provenance import read_provenance
from srcore.weights import load_upscaling_model


def test_cpu_nodes_fuse_the_stages_and_give_every_core_an_actor():
    job = UpscaleJob(input="in", output="out")
    layout = plan_layout(job, {"CPU": 16.0}, todo=10_000)
    assert layout.fused and layout.gpus_per_actor == 0 and layout.max_actors == 16 == layout.min_actors + 15
    assert layout.images_per_call == CPU_IMAGES_PER_CALL and layout.calls_per_actor == 1 and not layout.jpeg_bytes
    assert "each reads, decodes, upscales, encodes and writes" in layout.describe(10_000)
    # wider actors (torch threads) take several CPUs each; a small run starts no actor without a batch
    assert plan_layout(UpscaleJob(input="in", output="out", cpus_per_actor=4), {"CPU": 16.0}, 10_000).max_actors == 4
    assert plan_layout(job, {"CPU": 16.0}, todo=20).max_actors == 3
    assert plan_layout(job, {"CPU": 2.0}, todo=300).max_actors == 2


def test_gpu_nodes_split_the_stages_one_actor_per_gpu():
    job = UpscaleJob(input="in", output="out")
    layout = plan_layout(job, {"CPU": 16.0, "GPU": 8.0}, todo=100_000)
    assert not layout.fused and layout.gpus_per_actor == 1 and layout.max_actors == 8
    assert layout.images_per_call == GPU_IMAGES_PER_CALL and layout.calls_per_actor == 2 and layout.jpeg_bytes
    assert "decoding and encoding on CPU tasks, JPEG on the GPU" in layout.describe(100_000)
    assert layout.cpus_per_actor == 1
    # a node with as many CPUs as GPUs: the actors take less than a CPU each, so the tasks get two
    lean = plan_layout(job, {"CPU": 8.0, "GPU": 8.0}, todo=100_000)
    assert lean.max_actors == 8 and lean.cpus_per_actor == 0.75
    # --codecs cpu keeps JPEG on the CPU tasks; half a GPU per actor doubles the actors
    assert not plan_layout(UpscaleJob(input="in", output="out", engine=EngineOptions(codecs="cpu")),
                           {"CPU": 16.0, "GPU": 1.0}, 1000).jpeg_bytes
    assert plan_layout(UpscaleJob(input="in", output="out", num_gpus_per_actor=0.5), {"GPU": 2.0}, 1000).max_actors == 4
    # an autoscaling cluster whose GPU nodes start at zero: asked for by --num-gpus-per-actor
    assert plan_layout(UpscaleJob(input="in", output="out", num_gpus_per_actor=1, max_actors=4), {"CPU": 4.0},
                       1000).max_actors == 4


def test_the_layout_can_be_chosen_and_bad_values_name_the_flag():
    split = plan_layout(UpscaleJob(input="in", output="out", stage_layout="split"), {"CPU": 8.0}, 1000)
    assert not split.fused and split.max_actors == 4 and not split.jpeg_bytes  # half the CPUs for the tasks
    assert plan_layout(UpscaleJob(input="in", output="out", stage_layout="fused"), {"GPU": 2.0}, 1000).fused
    with pytest.raises(ValueError, match="--stage-layout"):
        UpscaleJob(input="in", output="out", stage_layout="sideways")


def _jpeg(pixels: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92, **params)
    return buf.getvalue()


def test_the_split_layouts_stages_write_what_the_fused_actor_writes(tmp_path):
    """Every image of good_images (modes, 16 bits, alpha, formats) plus JPEGs that travel as bytes (as they do
    to a GPU actor, which decodes them): the split flow's files equal the fused actor's, byte for byte."""
    source = tmp_path / "in"
    images = {k: v[0] for k, v in good_images(8, seed=7).items()}
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the orientation is applied whichever decoder reads the pixels
    exif[0x010F] = "ScanCo"
    images["jpeg/rotated.jpg"] = _jpeg(rng.integers(0, 256, (20, 28, 3), np.uint8), exif=exif.tobytes())
    images["jpeg/broken.jpg"] = _jpeg(rng.integers(0, 256, (20, 28, 3), np.uint8))[:200]
    for key, data in images.items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(data)
    model, name = load_upscaling_model("srcore-compact-x4", None)
    outputs = {}
    for layout in ("fused", "split"):
        job = UpscaleJob(input=str(source), output=str(tmp_path / layout), run_id="same-run", stage_layout=layout)
        with plan(job, name, 4) as manifest:
            rows = manifest.todo.table()
        if layout == "fused":
            done = UpscaleWriter(job, [model], use_gpu=False, fused=True)(rows)
        else:
            decoded = pa.concat_tables(read_and_decode(rows, job, jpeg_bytes=True))
            jpegs = sum(key.endswith(".jpg") for key in images)
            assert decoded.num_rows - decoded.column("data").null_count == jpegs  # JPEGs travel as their bytes
            upscaled = UpscaleWriter(job, [model], use_gpu=False, fused=False)(decoded)
            assert set(upscaled.column("status").to_pylist()) == {"upscaled", "failed"}
            done = encode_and_write(upscaled, job)
        report = {r["input"].rsplit("/in/", 1)[1]: r for r in done.to_pylist()}
        broken = report["jpeg/broken.jpg"]
        assert broken["status"] == "failed" and "jpeg/broken.jpg" in broken["error"]
        assert all(r["status"] == "ok" and r["lr_psnr"] > 20 for k, r in report.items() if k != "jpeg/broken.jpg")
        outputs[layout] = {p.relative_to(tmp_path / layout).as_posix(): p.read_bytes()
                           for p in (tmp_path / layout).rglob("*") if p.is_file() and "_reports" not in p.parts}
        outputs[layout + " rows"] = report
    assert outputs["fused"] == outputs["split"] and len(outputs["fused"]) == len(images) - 1
    rotated = decode(outputs["split"]["jpeg/rotated.jpg"])
    assert rotated.size == (80, 112)  # upright: 28x20 turned, then x4
    assert read_provenance(outputs["split"]["jpeg/rotated.jpg"])["run"] == "same-run"
    for key in outputs["fused rows"]:
        fused, split = outputs["fused rows"][key], outputs["split rows"][key]
        for column in ("status", "input_width", "input_height", "input_mode", "output_width", "output_height",
                       "output_mode", "output_bytes", "lr_psnr", "invented_share"):
            assert fused[column] == split[column], (key, column)
    assert json.dumps(outputs["split rows"]["jpeg/rotated.jpg"]["input_format"]) == '"JPEG"'
