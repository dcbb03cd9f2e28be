"""The bucket job's pieces that need no Ray: output keys, provenance, listing, configuration, the report."""

from __future__ import annotations

import base64
import io
import json
import os
import posixpath
import re
import socket
import subprocess
import sys
import time
import unicodedata
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipelines.lease import Lease, LeaseHeld
from pipelines.listing import ListingError
from pipelines.storage import Store
from pipelines.upscale import REPORT_SCHEMA, UpscaleJob, output_is_finished, plan
from pipelines.upscale.plan import output_formats
from pipelines.upscale.report import ReportWriter, read_report_rows
from pipelines.upscale.report_html import histogram_svg
from pipelines.upscale.run import remove_dead_writers_temporaries
from srcore.imageio import Picture, encode
from srcore.metrics import lr_consistency
from srcore.naming import plan_outputs, safe_relative
from srcore.options import EngineOptions, OutputOptions
from srcore.provenance import Provenance, read_provenance
from srcore.upscale import output_format


@pytest.mark.parametrize("key", ["../../etc/passwd.png", "/abs/x.png", "a//b.png", "a/./b.png", "..",
                                 "a/../../b.png", "\u202egnp.exe.png", "tab\there.png", "x/\x00y.png",
                                 "C:\\win\\p.png", "..\\..\\p.png"])
def test_safe_keys_never_leave_the_output_prefix(key):
    safe = safe_relative(key)
    joined = posixpath.normpath(posixpath.join("/out/prefix", safe))
    assert joined.startswith("/out/prefix/"), (key, safe)
    assert all(part not in ("", ".", "..") for part in safe.split("/"))
    assert all(ch.isprintable() for ch in safe)


def test_unicode_is_normalised_and_long_names_are_shortened():
    assert safe_relative(unicodedata.normalize("NFD", "café.png")) == "café.png"
    long = "x" * 400 + ".png"
    short = safe_relative(long)
    assert len(short.encode()) <= 255 and short.endswith(".png")
    assert safe_relative("y" * 400 + ".png") != short


def test_output_keys_keep_paths_change_extensions_and_never_collide():
    keys = ["a/photo.jpg", "a/photo.png", "b/scan.tif", "c/old.bmp", "d/café.png",
            unicodedata.normalize("NFD", "d/café.png"), "e/Case.png", "e/case.png"]
    plan = dict(zip(keys, plan_outputs(keys, None), strict=True))
    assert plan["b/scan.tif"] == "b/scan.tif" and plan["c/old.bmp"] == "c/old.png"
    assert len(set(plan.values())) == len(keys)  # jpg/png, two Unicode spellings, two cases: all distinct
    assert plan["a/photo.jpg"] == "a/photo.jpg" and plan["a/photo.png"] == "a/photo.png"
    as_png = dict(zip(keys, plan_outputs(keys, "png"), strict=True))  # photo.jpg and .png both want a/photo.png
    assert all(v.endswith(".png") for v in as_png.values()) and len(set(as_png.values())) == len(keys)
    assert as_png["a/photo.jpg"].startswith("a/photo-") and as_png["b/scan.tif"] == "b/scan.png"
    assert dict(zip(keys, plan_outputs(keys, None), strict=True)) == plan  # deterministic
    assert output_format("x.jpeg", None) == "JPEG" and output_format("x.gif", None) == "PNG"
    # clashes are found by digest and confirmed on the keys: with every digest equal, the same keys clash
    from srcore import naming as keys_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys_module, "digests", lambda texts: np.full(len(texts), 7, np.uint64))
        assert dict(zip(keys, plan_outputs(keys, None), strict=True)) == plan
    names = pa.chunked_array([["a/b.PNG", "c/d", "e.f/g", "x.jpeg", "a/b.", "z/..a.b.webp", "t.TIFF"]])
    formats = output_formats(names, None).to_pylist()
    assert formats == ["PNG", "PNG", "PNG", "JPEG", "PNG", "WEBP", "TIFF"]
    with pytest.raises(ValueError, match="--format"):
        output_format("x.png", "bmp")


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
def test_provenance_is_readable_from_the_start_or_the_end_of_each_format(fmt):
    provenance = Provenance("m", 4, "s3://b/k ü&<.png", "etag-1", "run-1")
    data = encode(Picture(np.zeros((300, 300, 3), np.uint8), "RGB"), fmt, provenance=provenance)
    found = read_provenance(data[:65536]) or read_provenance(data[-65536:])
    assert found == {"model": "m", "scale": "4", "source": "s3://b/k ü&<.png", "sourceVersion": "etag-1",
                     "run": "run-1"}
    assert read_provenance(b"no xmp here") == {}


def test_local_store_lists_with_versions_and_writes_atomically(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.png").write_bytes(b"1")
    (tmp_path / "in" / "sub" / "b.JPG").write_bytes(b"22")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"3")
    (tmp_path / "in" / "notes.txt").write_bytes(b"4")
    store = Store(str(tmp_path / "in"))
    entries = store.list()
    assert [e.relative for e in entries] == ["a.png", "sub/b.JPG"]
    assert [e.size for e in entries] == [1, 2] and all(e.version.startswith("mtime:") for e in entries)
    assert [e.relative for e in store.list(exclude=(f"{store.root}/sub",))] == ["a.png"]
    store.write_atomic(f"{store.root}/new/c.png", b"data")
    assert (tmp_path / "in" / "new" / "c.png").read_bytes() == b"data"
    assert not list((tmp_path / "in" / "new").glob(".*"))  # no temporary file left
    with pytest.raises(FileNotFoundError, match="missing"):
        Store(str(tmp_path / "missing")).list()
    # the columnar listing planning uses: every file with extensions=None, hidden ones alone with hidden=True
    every = store.list_table(extensions=None, hidden=None).to_pylist()
    assert [r["relative"] for r in every] == [".hidden.png", "a.png", "new/c.png", "notes.txt", "sub/b.JPG"]
    assert all(r["path"] == f"{store.root}/{r['relative']}" and r["version"].startswith("mtime:") for r in every)
    assert [r["relative"] for r in store.list_table(extensions=None, hidden=True).to_pylist()] == [".hidden.png"]
    with pytest.raises(FileNotFoundError, match="missing"):
        Store(str(tmp_path / "missing")).list_table()


@pytest.mark.parametrize("field, value, flag", [
    ("batch_size", 0, "--batch-size"), ("outscale", -1, "--outscale"), ("format", "bmp", "--format"),
    ("max_actors", 0, "--max-actors"), ("precision", "fp8", "--precision"),
    ("png_compression", 10, "--png-compression"), ("runtime", "onnx", "--runtime"),
    ("run_id", "../../elsewhere", "--run-id"), ("run_id", "..", "--run-id"),
])
def test_bad_job_settings_name_the_flag(tmp_path, field, value, flag):
    with pytest.raises(ValueError, match=flag):
        if field in {f.name for f in fields(EngineOptions)}:
            EngineOptions(**{field: value})
        elif field in {f.name for f in fields(OutputOptions)}:
            OutputOptions(**{field: value})
        else:
            UpscaleJob(input=str(tmp_path), output=str(tmp_path / "out"), **{field: value})
    with pytest.raises(ValueError, match="must differ"):
        UpscaleJob(input=str(tmp_path), output=str(tmp_path) + "/")


def test_lr_consistency_is_high_for_a_faithful_upscale_and_low_for_a_wrong_one():
    rng = np.random.default_rng(0)
    import cv2

    lr = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (48, 40), interpolation=cv2.INTER_CUBIC)
    faithful = cv2.resize(lr, (192, 160), interpolation=cv2.INTER_CUBIC)
    assert lr_consistency(lr, faithful, 4) > 30
    assert lr_consistency(lr, 255 - faithful, 4) < 15
    assert lr_consistency(lr.astype(np.uint16) * 257, faithful.astype(np.uint16) * 257, 4) > 30


def test_lr_consistency_of_a_large_input_is_estimated_on_crops_close_to_the_whole_image():
    import cv2

    from srcore.resize import imresize_np

    rng = np.random.default_rng(1)
    lr = cv2.resize(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8), (800, 600), interpolation=cv2.INTER_CUBIC)
    faithful = imresize_np(lr, 4.0)
    shifted = np.roll(faithful, 3, axis=1)
    for sr in (faithful, shifted):
        whole = lr_consistency(lr, sr, 4, max_pixels=10**9)
        crops = lr_consistency(lr, sr, 4, max_pixels=4 * 256 * 256)  # 2 x 2 crops of 256 of the 480,000 pixels
        assert abs(whole - crops) < 1.0, (whole, crops)
    assert lr_consistency(lr, shifted, 4, max_pixels=4 * 256 * 256) < lr_consistency(lr, faithful, 4) - 10


def test_the_report_streams_into_parts_and_its_page_has_summary_failures_histograms_and_crops(tmp_path, monkeypatch):
    from pipelines.upscale import report as report_module

    monkeypatch.setattr(report_module, "ROWS_PER_PART", 3)  # parts fill as rows come, not at the end
    rng = np.random.default_rng(0)
    files = tmp_path / "files"
    files.mkdir()
    ok = {"status": "ok", "input_width": 50, "input_height": 40, "output_width": 200, "output_height": 160,
          "upscale_s": 0.1, "model": "m", "scale": 4.0, "device": "cpu", "node": "n1"}
    rows = []
    for i in range(5):  # real files: previews are read back after the run
        lr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(lr).save(files / f"{i}.png")
        Image.fromarray(np.repeat(np.repeat(lr, 4, 0), 4, 1)).save(files / f"{i}_out.png")
        rows.append({"input": str(files / f"{i}.png"), "output": str(files / f"{i}_out.png"), **ok,
                     "lr_psnr": 30.0 + i, "invented_share": 0.1 * i})
    rows.insert(1, {"input": "s3://b/<bad>.png", "status": "failed", "error": "s3://b/<bad>.png: empty file (0 bytes)"})
    rows.append({"input": "s3://b/done.png", "status": "skipped", "model": "m", "scale": 4.0})
    writer = ReportWriter(str(tmp_path / "report"), previews=2)
    for start in (0, 2, 3):  # batches of 2, 1 and 4 rows
        writer.add(pa.Table.from_pylist([{k: r.get(k) for k in REPORT_SCHEMA.names} for r in
                                         rows[start: {0: 2, 2: 3, 3: 7}[start]]], schema=REPORT_SCHEMA))
        assert writer.pending_rows < 3
    assert sorted(p.name for p in (tmp_path / "report" / "rows").iterdir()) == ["part-00000.parquet",
                                                                              "part-00001.parquet"]
    summary = writer.finish(UpscaleJob(input="s3://b", output="s3://o", run_id="r1"), listed=9, wall_s=2.0)
    assert len(list((tmp_path / "report" / "rows").iterdir())) == 3
    written = read_report_rows(str(tmp_path / "report"))
    assert written.column("input").to_pylist() == [r["input"] for r in rows]
    assert written.schema == REPORT_SCHEMA
    assert (summary["ok"], summary["failed"], summary["skipped"], summary["images"]) == (5, 1, 1, 7)
    assert summary["input_megapixels"] == pytest.approx(5 * 0.002) and summary["lr_psnr_median"] == 32.0
    assert summary["devices"] == ["cpu"] and summary["nodes"] == ["n1"] and summary["images_listed"] == 9
    html = (tmp_path / "report" / "report.html").read_text()
    assert json.loads((tmp_path / "report" / "summary.json").read_text()) == summary
    assert "Failures (1)" in html and "empty file (N bytes)" in html and "s3://b/&lt;bad&gt;.png" in html
    assert summary["invented_share_median"] == pytest.approx(0.2)
    assert html.count("<svg") == 4 and "n = 5" in html and ">images</text>" in html  # histograms with axes
    assert "invented detail (% of the output&#x27;s area)" in html
    # previews chosen after the run: the lowest LR-consistency (30 dB, 0.png) and one random output
    assert html.count("class='pair'") == 2 and "lowest LR-consistency" in html and "0.png" in html
    # each output crop's invention map, a layer over the output, off until its box is ticked (nearest-enlarged
    # noise: a sharp grid the input cannot attest, so the layer is far from empty)
    assert html.count("<img class='invented'") == 2 and html.count("class='show-invented'") == 2
    layer = re.search(r"<img class='invented' alt='invented detail' src='data:image/png;base64,([^']+)'", html)
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(layer.group(1)))))
    assert overlay.shape[2] == 4 and overlay[..., 3].mean() > 50
    assert "71.4%" in html  # 5 of 7 upscaled, in words a person reads
    assert histogram_svg([None, float("nan")]) == "<p>no data</p>"


def test_plan_lists_limits_samples_and_keeps_outputs_nested_in_the_input_out(tmp_path):
    for i in range(10):
        (tmp_path / f"img{i}.png").write_bytes(b"x" * (10 - i))
    out = tmp_path / "sr"
    out.mkdir()
    (out / "img3.png").write_bytes(b"earlier output")  # nested in the input: never listed as an input
    job = UpscaleJob(input=str(tmp_path), output=str(out), previews=2)
    with plan(job, "m") as manifest:
        rows = manifest.table().to_pylist()
        folder = manifest.folder
    assert not os.path.exists(folder)  # the scratch pages go with the plan
    assert manifest.listed == 10 and len(rows) == 10
    assert [r["input_bytes"] for r in rows] == sorted(r["input_bytes"] for r in rows)
    assert {r["output"] for r in rows} == {str(out / f"img{i}.png") for i in range(10)}
    assert [r["input"].endswith("img3.png") for r in rows if r["status"] == "exists"] == [True]
    limited = plan(UpscaleJob(input=str(tmp_path), output=str(out), limit=3), "m").table().to_pylist()
    assert sorted(r["input"][-8:] for r in limited) == ["img0.png", "img1.png", "img2.png"]
    sampled = [plan(UpscaleJob(input=str(tmp_path), output=str(out), sample=4, seed=s), "m").table().column("input")
               .to_pylist() for s in (1, 1, 2)]
    assert len(sampled[0]) == 4 and sampled[0] == sampled[1] and sampled[0] != sampled[2]


@pytest.mark.parametrize("fmt", ["png", "webp", "tiff"])
def test_an_output_is_finished_only_for_the_same_input_version_model_and_scale(tmp_path, fmt):
    noisy = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)  # > 64 KiB encoded
    data = encode(Picture(noisy, "RGB"), fmt, provenance=Provenance("m", 4, "in.png", "etag-1", "run-1"))
    assert len(data) > 65536
    store = Store(str(tmp_path))
    store.write_atomic(f"{store.root}/out.{fmt}", data)
    row = {"output_key": f"{store.root}/out.{fmt}", "input_version": "etag-1", "model": "m", "scale": 4.0}
    assert output_is_finished(store, dict(row))
    assert not output_is_finished(store, row | {"input_version": "etag-2"})  # the input was replaced
    assert not output_is_finished(store, row | {"model": "other"})
    assert not output_is_finished(store, row | {"scale": 2.0})


def test_planning_finds_temporaries_and_a_lease_makes_their_removal_safe(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    temporary = out / ".a.png.0123abcd.tmp"
    temporary.write_bytes(b"partial")
    manifest = plan(UpscaleJob(input=str(tmp_path / "in"), output=str(out)), "m")
    assert manifest.temporaries == [str(temporary)] and temporary.exists()  # planning alone deletes nothing

    store = Store(str(out))
    lease_path = str(out / "_reports" / "lease.json")
    with Lease(store, lease_path, "run-a") as lease:
        holder = json.loads(Path(lease_path).read_text())
        assert holder["run"] == "run-a" and holder["expires_unix"] > time.time()
        with pytest.raises(LeaseHeld, match="run run-a .* is writing to this output"):
            Lease(store, lease_path, "run-b").acquire()
        assert lease.version
    assert not Path(lease_path).exists()  # released

    # a killed run's lease: no renewals, expired -> the next run takes it over
    Path(lease_path).write_text(json.dumps({"run": "killed", "host": "h", "pid": 1, "expires_unix": time.time() - 1}))
    with Lease(store, lease_path, "run-c"):
        assert json.loads(Path(lease_path).read_text())["run"] == "run-c"
    # on this host, a holder whose process has ended is gone at once, before its lease expires
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Path(lease_path).write_text(json.dumps({"run": "crashed", "host": socket.gethostname(),
                                            "pid": int(ended.stdout), "expires_unix": time.time() + 300}))
    with Lease(store, lease_path, "run-d"):
        assert json.loads(Path(lease_path).read_text())["run"] == "run-d"
    # elsewhere, a live-looking holder keeps it unless the operator breaks the lease
    Path(lease_path).write_text(json.dumps({"run": "remote", "host": "other-host", "pid": 7,
                                            "expires_unix": time.time() + 300}))
    with pytest.raises(LeaseHeld, match="run remote") as held:
        Lease(store, lease_path, "run-e").acquire()
    assert re.search(r"expires in (29\d|300) s \(", str(held.value)), held.value  # how long, and how to break it
    assert "if that run was killed, rerun now with --break-lease" in str(held.value)
    with Lease(store, lease_path, "run-e", break_lease=True):
        assert json.loads(Path(lease_path).read_text())["run"] == "run-e"

    # a run with a live lease on a nested output prefix keeps its temporaries; the dead writer's go
    nested = out / "sub" / "_reports" / "lease.json"
    nested.parent.mkdir(parents=True)
    nested.write_text(json.dumps({"run": "nested", "host": "other-host", "pid": 7, "expires_unix": time.time() + 300}))
    theirs = out / "sub" / ".x.png.feed.tmp"
    theirs.write_bytes(b"in flight")
    manifest = plan(UpscaleJob(input=str(tmp_path / "in"), output=str(out)), "m")
    with Lease(store, lease_path, "run-f"):
        removed = remove_dead_writers_temporaries(store, lease_path, manifest.temporaries, manifest.leases)
    assert removed == 1 and not temporary.exists() and theirs.exists()


def test_a_csv_file_of_keys_names_the_inputs_once_each(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png", "d.png"):
        (tmp_path / "in" / name).write_bytes(b"x" * 3)
    keys = tmp_path / "keys.csv"
    keys.write_text('key,size,etag\na.png,3,"e1"\nsub/c.png,3,e2\nnotes.txt,1,e3\na.png,3,e1\n007.png,1,e4\n')
    job = UpscaleJob(input=str(tmp_path / "in"), output=str(tmp_path / "out"), input_manifest=str(keys))
    with plan(job, "m") as manifest:
        rows = manifest.table().to_pylist()
    assert manifest.listed == 3  # a.png once, notes.txt is no image; 007.png stays a name, not a number
    assert sorted((r["input"][len(str(tmp_path / "in")) + 1:], r["input_version"]) for r in rows) == [
        ("007.png", "e4"), ("a.png", "e1"), ("sub/c.png", "e2")]
    with plan(UpscaleJob(input=job.input, output=job.output, input_manifest=str(keys), sample=2), "m") as sampled:
        assert sampled.rows == 2
    keys.write_text("name\na.png\n")
    with pytest.raises(ListingError, match=r"keys.csv: .*no 'key' column"):
        plan(job, "m")


@pytest.mark.xdist_group("ray")
def test_plan_pages_reach_ray_data_as_small_blocks_and_the_driver_keeps_few_read_tasks(shared_ray, tmp_path,
                                                                                        monkeypatch):
    """The run's Ray: pages on disk become blocks of a batch each (one decode task a block), and beyond
    MAX_READ_TASKS blocks a block holds several batches, so the driver's read tasks stay bounded."""
    import ray

    from pipelines import pages as pages_module
    from pipelines.pages import PageFile, read_pages

    monkeypatch.setattr(pages_module, "PAGE_ROWS", 16)
    pages = PageFile(str(tmp_path / "rows.arrow"), pa.schema([("i", pa.int64())]))
    pages.write(pa.table({"i": np.arange(40)}))
    assert pages.page_rows == [16, 16, 8] and pages.table().column("i").to_pylist() == list(range(40))
    ray.data.DataContext.get_current().enable_progress_bars = False
    small = [b.num_rows for b in read_pages(pages, 4).iter_batches(batch_size=None, batch_format="pyarrow")]
    assert sorted(small) == [4] * 10
    monkeypatch.setattr(pages_module, "MAX_READ_TASKS", 3)  # 10 batches of 4 -> blocks of 16 at most
    ds = read_pages(pages, 4)
    blocks = list(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    assert sorted(b.num_rows for b in blocks) == [8, 16, 16]
    assert sorted(i for b in blocks for i in b.column("i").to_pylist()) == list(range(40))


def test_an_s3_prefix_is_listed_a_page_at_a_time_in_key_order(s3):
    """Over 1,000 keys (more than one ListObjectsV2 page) on the loopback S3 server: every key once, in key
    order, in batches made as the pages come; odd keys kept raw."""
    import boto3


    client = boto3.client("s3")
    client.create_bucket(Bucket="many")
    keys = [f"in/d{i % 7}/img_{i:05d}.png" for i in range(1010)] + ["in//double.png", "in/a b+c.png"]
    for key in keys:
        client.put_object(Bucket="many", Key=key, Body=b"x")
    client.put_object(Bucket="many", Key="in-other/x.png", Body=b"x")  # a sibling prefix, not listed
    store = Store("s3://many/in")
    batches = list(store.list_pages())
    listed = [p for b in batches for p in b.column("path").to_pylist()]
    assert listed == sorted(f"many/{k}" for k in keys)
    relatives = [r for b in batches for r in b.column("relative").to_pylist()]
    assert "/double.png" in relatives and "a b+c.png" in relatives
    assert all(v for b in batches for v in b.column("version").to_pylist())  # ETags
    assert store.list_table().num_rows == len(keys)


@pytest.mark.parametrize("where", ["s3", "local"])
def test_keys_and_prefixes_with_glob_characters_are_written_and_found_exactly(where, s3, tmp_path):
    """'[', ']', '*', '?' and braces are ordinary characters in a key: an atomic write lands on exactly that key
    (a copy that read them as a glob once matched nothing, left no output and reported none missing), and a
    report under an output prefix that holds them finds its own rows and the earlier runs' summaries."""
    import boto3

    from pipelines.upscale.report import earlier_runs

    names = ["[1].png", "a*b.png", "q?.png", "{a,b}.png", "${x}{{7*7}}.png"]
    if where == "s3":
        boto3.client("s3").create_bucket(Bucket="globs")
        root, location = "globs/out[2]*", "s3://globs/out[2]*"
    else:
        root = location = str(tmp_path / "out[2]*")
        os.makedirs(root)
    store = Store(location)
    for i, name in enumerate(names):
        if i % 2:
            store.write_atomic(f"{root}/{name}", name.encode())
        else:
            with store.open_atomic(f"{root}/{name}") as f:
                f.write(name.encode())
    assert {e.relative: store.read(e.path) for e in store.list(extensions=None)} == {n: n.encode() for n in names}

    for run in ("r0", "r1"):
        writer = ReportWriter(f"{location}/_reports/{run}", previews=0)
        writer.add(pa.Table.from_pylist([{"input": f"{run}.png", "status": "failed", "error": "x"}],
                                        schema=REPORT_SCHEMA))
        summary = writer.finish(UpscaleJob(input=str(tmp_path), output=location, run_id=run), listed=1, wall_s=1.0)
    assert read_report_rows(f"{location}/_reports/r1").column("input").to_pylist() == ["r1.png"]
    assert [r["run"] for r in earlier_runs(f"{location}/_reports/r1", summary)] == ["r0", "r1"]


def test_a_store_errors_credentials_never_reach_the_report(tmp_path, monkeypatch):
    """Store clients quote URLs in their errors: an endpoint's user:password, a presigned URL's signature and
    token, or the secret itself. The report's rows, failure causes, summary and page keep the error without
    them (redact masks userinfo, http(s) query strings, signing parameters and credential variables' values)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrPlanTestSecretK7MDENG")
    errors = ['s3://b/in/a.png: Could not connect to the endpoint URL: "http://minio:hunter22@10.0.0.5:9000/b/in/a.png"',
              "s3://b/in/c.png: 403 for https://b.s3.amazonaws.com/in/c.png?X-Amz-Credential=AKIAPLANTEST%2F2026"
              "&X-Amz-Security-Token=FwoGPlanToken&X-Amz-Signature=5f1d2e3c",
              "s3://b/in/d.png: signature mismatch (secret wJalrPlanTestSecretK7MDENG)"]
    rows = [{"input": e.split(":", 2)[0] + ":" + e.split(":", 2)[1], "status": "failed", "error": e} for e in errors]
    writer = ReportWriter(str(tmp_path / "_reports" / "r"), previews=0)
    writer.add(pa.Table.from_pylist(rows, schema=REPORT_SCHEMA))
    writer.finish(UpscaleJob(input="s3://b/in", output=str(tmp_path), run_id="r"), listed=3, wall_s=1.0)
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "_reports" / "r").glob("*.*"))
    written += str(read_report_rows(str(tmp_path / "_reports" / "r")).to_pylist())
    for secret in ("hunter22", "AKIAPLANTEST", "FwoGPlanToken", "5f1d2e3c", "wJalrPlanTestSecretK7MDENG"):
        assert secret not in written, secret
    assert "http://***@10.0.0.5:9000/b/in/a.png" in written and "c.png?***" in written  # the rest kept
