"""Inputs that used to be lost, mishandled silently, or able to hang or sink a run: each is either upscaled
correctly or a failed row that says why, and the run goes on. The run's Ray head and loopback S3 server; the
job called in this process (as a Ray job whose workers get their own variables where faults are injected), or
as a second process where two drivers must meet (the lease)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import s3fs
import tifffile
from bucket_helpers import (
    ROOT,
    get_object,
    good_images,
    job_command,
    list_objects,
    make_bucket,
    run_job,
    summary_of,
)
from fault_proxy import FAULTS, fault_proxy
from PIL import Image, PngImagePlugin

from pipelines.faults import faults_env
from pipelines.local_s3 import s3_client
from pipelines.storage import OutsideOutputError, Store
from pipelines.upscale.report import read_report_rows
from srcore.imageio import decode
from srcore.provenance import read_provenance

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray"), pytest.mark.xdist_group("ray")]


def _png(pixels: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **save)
    return buf.getvalue()


def _frames(fmt: str) -> bytes:
    frames = [Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _tiff(pixels: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, **kwargs)
    return buf.getvalue()


def test_odd_inputs_are_upscaled_right_or_reported_never_lost(s3):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    their_xmp = PngImagePlugin.PngInfo()
    their_xmp.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/">camera notes</x:xmpmeta>')
    their_xmp.add_text("Title", "harbour at dawn")
    files = {
        "in/double.png": _png(pixels),
        "in//double.png": _png(pixels[::-1].copy()),  # a different object: "//" is part of the key
        "in/with_xmp.png": _png(pixels, pnginfo=their_xmp),
        "in/five_channels.tif": _tiff(rng.integers(0, 256, (20, 24, 5), dtype=np.uint8), photometric="rgb",
                                      extrasamples=("unspecified", "unspecified")),
        "in/animated.gif": _frames("GIF"),
        "in/animated.png": _frames("PNG"),
    }
    make_bucket("odd", "raw", files)
    result = run_job("--input", "s3://odd/raw/in", "--output", "s3://odd/sr", "--max-failure-rate", "0.5")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = summary_of(result)
    assert (summary["images"], summary["ok"], summary["failed"]) == (6, 3, 3)

    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    rows = {r["input"]: r for r in pq.read_table(summary["report"].removeprefix("s3://") + "/rows",
                                                  filesystem=fs).to_pylist()}
    # two keys that differ only by "//" get two outputs (hash-suffixed, deterministic), each its own input's
    double = [rows["s3://odd/raw/in/double.png"], rows["s3://odd/raw/in//double.png"]]
    assert all(r["status"] == "ok" for r in double)
    assert len({r["output"] for r in double}) == 2
    outputs = list_objects("odd", "sr")
    assert len([k for k in outputs if k.startswith("double-")]) == 2
    for row, source in zip(double, (pixels, pixels[::-1]), strict=True):
        out = decode(get_object("odd", row["output"].removeprefix("s3://odd/")))
        small = np.asarray(Image.fromarray(out.pixels).resize((24, 20), Image.BICUBIC)).astype(int)
        assert np.abs(small - source).mean() < np.abs(small - source[::-1]).mean()  # not swapped or overwritten

    # the source's XMP is dropped: the output's only packet is ours, so it is recognised as finished
    data = get_object("odd", "sr/with_xmp.png")
    assert data.count(b"<x:xmpmeta") == 1 and b"camera notes" not in data
    assert read_provenance(data)["source"] == "s3://odd/raw/in/with_xmp.png"
    assert decode(data).text["Title"] == "harbour at dawn"

    errors = {k.rsplit("/", 1)[-1]: rows[k]["error"] for k in rows if rows[k]["status"] == "failed"}
    assert "5 channels per pixel" in errors["five_channels.tif"]
    assert "animated GIF with 3 frames" in errors["animated.gif"]
    assert "animated PNG with 3 frames" in errors["animated.png"]
    assert not any(k.startswith(("five_channels", "animated")) for k in outputs)

    rerun = run_job("--input", "s3://odd/raw/in", "--output", "s3://odd/sr", "--max-failure-rate", "0.5")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = summary_of(rerun)
    assert (again["skipped"], again["ok"], again["failed"]) == (3, 0, 3)  # the XMP input is finished now


def test_a_symlinked_sub_folder_never_takes_local_writes_outside_the_output(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    store = Store(str(out))
    with pytest.raises(OutsideOutputError, match="refusing to write outside"):
        store.write_atomic(str(out / "sub" / "a.png"), b"x")
    with pytest.raises(OutsideOutputError):
        store.write_atomic(str(out / "sub" / "new" / "b.png"), b"x")  # not even a new folder in there
    assert list(elsewhere.iterdir()) == []
    store.write_atomic(str(out / "fine" / "c.png"), b"y")
    assert (out / "fine" / "c.png").read_bytes() == b"y"

    # end to end: the input's sub-folder maps onto the symlink, its row fails, the others are written
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "top.png").write_bytes(_png(np.zeros((12, 12, 3), np.uint8)))
    (src / "sub" / "inner.png").write_bytes(_png(np.zeros((12, 12, 3), np.uint8)))
    result = run_job("--input", str(src), "--output", str(out), "--max-failure-rate", "0.6")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (summary_of(result)["ok"], summary_of(result)["failed"]) == (1, 1)
    assert (out / "top.png").exists() and list(elsewhere.iterdir()) == []


def test_a_prefix_that_cannot_be_listed_exits_2_with_the_reason(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port with nothing behind it: every request is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="x",
                            AWS_SECRET_ACCESS_KEY="x", AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard").items():
        monkeypatch.setenv(name, value)  # the listing fails in the driver, before any Ray work
    result = run_job("--input", "s3://nowhere/in", "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "s3://nowhere/in: cannot list" in result.stderr and "Traceback" not in result.stderr


def test_inputs_that_kill_their_workers_become_failed_rows_and_the_run_goes_on(s3, shared_ray):
    """One input kills every actor that upscales it, another every decode task that reads it (as an
    out-of-memory kill would): each ends as one failed row, the inputs batched with them are retried alone and
    finish, and the report lists every input."""
    good = {k: v[0] for k, v in good_images(10, seed=3).items()}
    poison = _png(np.full((24, 24, 3), 128, np.uint8))
    make_bucket("poison", "in", {**good, "kills-actor.png": poison, "kills-decoder.png": poison})
    shared_ray(**faults_env(die={"upscale": "kills-actor", "decode": "kills-decoder"}))  # the workers' variable
    result = run_job("--input", "s3://poison/in", "--output", "s3://poison/out", "--max-failure-rate", "0.5",
                     "--images-per-batch", "4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = summary_of(result)
    assert (summary["images"], summary["ok"], summary["failed"]) == (12, 10, 2)
    assert "retrying each alone" in result.stdout
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    rows = {r["input"]: r for r in pq.read_table(summary["report"].removeprefix("s3://") + "/rows",
                                                  filesystem=fs).to_pylist()}
    assert len(rows) == 12
    for name in ("kills-actor.png", "kills-decoder.png"):
        row = rows[f"s3://poison/in/{name}"]
        assert row["status"] == "failed" and "died 3 times, with the input alone" in row["error"]
    outputs = list_objects("poison", "out")
    assert len(outputs) == 10 and not any(k.startswith("kills-") for k in outputs)


def test_one_run_at_a_time_per_output_and_temporaries_gone_after_a_rerun(s3):
    make_bucket("shared", "in", {k: v[0] for k, v in good_images(24, seed=5).items()})
    args = ["--input", "s3://shared/in", "--output", "s3://shared/out"]
    # the first run a process on the shared head, the second in this process: two drivers, one output
    first = subprocess.Popen(job_command(*args), cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    try:
        for _ in range(600):
            if fs.exists("shared/out/_reports/lease.json"):
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.1)
        second = run_job(*args)
        assert second.returncode == 3, second.stdout[-2000:] + second.stderr[-2000:]
        assert "is writing to this output" in second.stderr and "Traceback" not in second.stderr
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-2000:] + err[-3000:]
    assert summary_of(subprocess.CompletedProcess([], 0, out, err))["ok"] == 24
    assert not fs.exists("shared/out/_reports/lease.json")  # released

    # a killed writer's temporary upload: the next run holds the lease, so it knows the writer is gone
    leftover = "shared/out/photos/.rgb_0.png.0123456789abcdef.tmp"
    fs.pipe_file(leftover, b"half an upload")
    rerun = run_job(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "removed 1 temporary uploads" in rerun.stdout
    assert not fs.exists(leftover) and summary_of(rerun)["skipped"] == 24


def test_under_throttling_latency_and_25_percent_s3_faults_every_image_is_written_exactly_once(
        s3, shared_ray, monkeypatch):
    """S3 under load: a quarter of the requests fail (half of those 503 SlowDown, the rest 500s and dropped
    connections), a fifth wait 0.2 s, and one hot key is throttled on every request. Every other image is
    written once; the hot key's input fails alone after a bounded number of tries; the retries are reported."""
    from pipelines.storage import CALL_ATTEMPTS, REQUEST_ATTEMPTS

    images = good_images(16, seed=7)
    make_bucket("flaky", "in", {**{k: v[0] for k, v in images.items()}, "hot.png": next(iter(images.values()))[0]})
    with fault_proxy(os.environ["AWS_ENDPOINT_URL"], rate=0.25, seed=1, kinds=(*FAULTS, "503", "503", "503"),
                     delay_rate=0.2, delay_s=0.2, throttled="/flaky/in/hot.png") as (url, faults):
        shared_ray(AWS_ENDPOINT_URL=url)  # the workers reach S3 through the proxy, and so does the driver
        with monkeypatch.context() as driver:
            driver.setenv("AWS_ENDPOINT_URL", url)
            result = run_job("--input", "s3://flaky/in", "--output", "s3://flaky/out", "--max-failure-rate", "0.1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = summary_of(result)
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (16, 1, 0)
    injected = sum(n for kind, n in faults.items() if kind not in ("pass", "delayed", "throttled"))
    assert injected >= 20 and faults["503"] > injected / 2 and faults["delayed"] >= 10, faults
    assert all(faults[kind] for kind in ("500", "drop-before", "drop-after")), faults
    # bounded: botocore sends a request at most REQUEST_ATTEMPTS times, s3fs repeats a call at most CALL_ATTEMPTS
    assert REQUEST_ATTEMPTS <= faults["throttled"] <= REQUEST_ATTEMPTS * CALL_ATTEMPTS, faults
    rows = {r["input"]: r for r in read_report_rows(summary["report"]).to_pylist()}
    hot = rows.pop("s3://flaky/in/hot.png")
    assert hot["status"] == "failed" and "Reduce rate" in hot["error"], hot["error"]  # (SlowDown's message)
    # reported: each input's retries in its row, their sum and the driver's in the summary and on the console
    retried = sum(r["store_retries"] for r in rows.values()) + hot["store_retries"]
    assert hot["store_retries"] >= REQUEST_ATTEMPTS - 1 and retried <= summary["store_retries"] <= faults["500"] + \
        faults["503"] + faults["throttled"] + faults["drop-before"] + faults["drop-after"], (summary, faults)
    assert f"store retries  {summary['store_retries']} " in result.stdout
    outputs = list_objects("flaky", "out")  # straight from the server, past the proxy
    assert len(outputs) == 16 and "hot.png" not in outputs
    for key in outputs:
        assert read_provenance(get_object("flaky", f"out/{key}"))["run"] == summary["run"]
    keys = [o["Key"] for o in s3fs_listing("flaky", "out")]
    assert not [k for k in keys if k.endswith(".tmp")] and "out/_reports/lease.json" not in keys


def s3fs_listing(bucket: str, prefix: str) -> list[dict]:
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    return [{"Key": path.split("/", 1)[1]} for path in fs.find(f"{bucket}/{prefix}")]


def test_a_rerun_trusts_the_latest_report_and_checks_only_what_it_cannot_vouch_for(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        (src / f"p{i}.png").write_bytes(_png(np.full((12, 16, 3), 40 * i, np.uint8)))
    first = run_job("--input", str(src), "--output", str(out))
    assert first.returncode == 0 and summary_of(first)["ok"] == 4, first.stderr[-2000:]

    again = run_job("--input", str(src), "--output", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert (summary_of(again)["skipped"], summary_of(again)["ok"]) == (4, 0)
    assert "4 finished by earlier runs" in again.stdout and "to upscale on" not in again.stdout  # no Ray

    # an output replaced behind the job's back (another size): its report no longer vouches for it, so its
    # provenance is read; a foreign file has none, and the input is upscaled again
    (out / "p1.png").write_bytes(_png(np.zeros((3, 3, 3), np.uint8)))
    third = run_job("--input", str(src), "--output", str(out))
    assert third.returncode == 0, third.stderr[-2000:]
    assert (summary_of(third)["skipped"], summary_of(third)["ok"]) == (3, 1)
    assert "3 finished by earlier runs" in third.stdout and "1 to upscale on" in third.stdout
    assert decode((out / "p1.png").read_bytes()).size == (64, 48)


def test_inputs_named_by_an_s3_inventory_report_or_a_parquet_file_of_keys(s3):
    """An S3 Inventory report (manifest.json, gzipped CSV with URL-encoded keys) names the inputs instead of a
    listing: only its keys under the input prefix run, a key named twice runs once, and a rerun from a Parquet
    file of keys (key, size, etag) skips what the first run finished."""
    import gzip
    import json
    from urllib.parse import quote_plus

    import pyarrow as pa

    images = {k: v[0] for k, v in good_images(6, seed=9).items()}
    make_bucket("inv", "in", {**images, "with space.png": images[next(iter(images))]})
    listed = list_objects("inv", "in")
    named = sorted(listed)[:4] + ["with space.png"]
    rows = [("inv", f"in/{k}", listed[k]["Size"], listed[k]["ETag"].strip('"')) for k in named]
    rows += [rows[0], ("inv", "elsewhere/x.png", 5, "e")]  # named twice; outside the input prefix
    csv_text = "".join(f'"{b}","{quote_plus(k, safe="/")}","{s}","{e}"\n' for b, k, s, e in rows)
    client_files = {"inv/cfg/data/part-1.csv.gz": gzip.compress(csv_text.encode()),
                    "inv/cfg/2026-11-23T00-00Z/manifest.json": json.dumps({
                        "sourceBucket": "inv", "destinationBucket": "arn:aws:s3:::inv", "fileFormat": "CSV",
                        "fileSchema": "Bucket, Key, Size, ETag",
                        "files": [{"key": "reports/inv/cfg/data/part-1.csv.gz", "size": 1}]}).encode()}
    make_bucket("inv", "reports", client_files)
    manifest = "s3://inv/reports/inv/cfg/2026-11-23T00-00Z/manifest.json"
    first = run_job("--input", "s3://inv/in", "--output", "s3://inv/out", "--input-manifest", manifest)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = summary_of(first)
    assert (summary["images_listed"], summary["ok"], summary["failed"]) == (5, 5, 0)
    assert sorted(list_objects("inv", "out")) == sorted(named)

    keys = pa.table({"key": [f"in/{k}" for k in sorted(listed)], "size": [listed[k]["Size"] for k in sorted(listed)],
                     "etag": [listed[k]["ETag"] for k in sorted(listed)]})
    buf = io.BytesIO()
    pq.write_table(keys, buf)
    make_bucket("inv", "lists", {"keys.parquet": buf.getvalue()})
    again = run_job("--input", "s3://inv/in", "--output", "s3://inv/out", "--input-manifest", "s3://inv/lists/keys.parquet")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = summary_of(again)
    assert (summary["images"], summary["skipped"], summary["ok"]) == (7, 5, 2)
    assert "5 finished by earlier runs" in again.stdout

    broken = run_job("--input", "s3://inv/in", "--output", "s3://inv/out2", "--input-manifest", "s3://inv/lists/keys.txt")
    assert broken.returncode == 2 and "s3://inv/lists/keys.txt" in broken.stderr and "Traceback" not in broken.stderr


def test_no_credential_reaches_the_console_or_any_artefact(hostile_run, tmp_path):
    """The store credentials the driver and the workers held during a real run (bucket_helpers.SECRETS) are in
    nothing the job printed or wrote: its console, each output (its metadata and provenance read back whole,
    compressed chunks included), summary.json, report.html and the report's Parquet rows. A URI that carries
    credentials is refused, naming the flag, without echoing them."""
    from bucket_helpers import SECRETS

    client = s3_client()
    written = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="hostile", Prefix="out/"):
        for obj in page.get("Contents", []):
            written[obj["Key"]] = get_object("hostile", obj["Key"])
    texts = {"console": hostile_run.stdout + hostile_run.stderr}
    for key, data in written.items():
        if key.endswith(".parquet"):
            texts[key] = str(pq.read_table(io.BytesIO(data)).to_pylist())
        elif key.endswith(".png"):
            with Image.open(io.BytesIO(data)) as im:
                texts[key] = str(im.info) + str(im.getexif()) + str(read_provenance(data))
        else:
            texts[key] = data.decode()
    kinds = {k.rsplit(".", 1)[-1] for k in texts if k != "console"}
    assert {"png", "json", "html", "parquet"} <= kinds and len([k for k in texts if k.endswith(".png")]) == 4
    for name, value in SECRETS.items():
        assert not [k for k, text in texts.items() if value in text], name
        assert not [k for k, data in written.items() if value.encode() in data], name

    with_credentials = f"s3://{SECRETS['AWS_ACCESS_KEY_ID']}:{SECRETS['AWS_SECRET_ACCESS_KEY']}@hostile/in"
    refused = run_job("--input", with_credentials, "--output", str(tmp_path / "out"))
    assert refused.returncode == 2 and "--input must not carry credentials" in refused.stderr, refused.stderr
    assert not [v for v in SECRETS.values() if v in refused.stdout + refused.stderr]
    assert "s3://***@hostile/in" in refused.stderr
