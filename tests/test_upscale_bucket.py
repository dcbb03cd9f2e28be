"""The bucket job end to end: a real Ray, a real S3-protocol server on loopback (moto), real image files.

The first run of the first test is ``python jobs/upscale_bucket.py`` in its own process, and the local-folder
test's first run is the ``srcore bucket`` command, both joining the run's shared Ray head as a submitted job
joins its cluster; the killed run is a process too. Other runs call the same ``main`` in this process.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs
from bucket_helpers import (
    ROOT,
    bad_files,
    get_object,
    good_images,
    job_command,
    list_objects,
    make_bucket,
    private_env,
    run_job,
    run_job_process,
    summary_of,
)
from catalogue_helpers import assert_catalogue_kept, catalogued_scans
from command_helpers import clash_folder, clash_source, expected_clash_outputs

from srcore.imageio import decode
from srcore.provenance import read_provenance

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray"), pytest.mark.xdist_group("ray")]

def _report_rows(summary: dict) -> dict[str, dict]:
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    table = pq.read_table(summary["report"].removeprefix("s3://") + "/rows", filesystem=fs)
    return {r["input"]: r for r in table.to_pylist()}


def test_bucket_job_upscales_good_images_and_reports_bad_ones(s3):
    good = good_images(20)
    bad = bad_files()
    make_bucket("archive", "raw", {**{k: v[0] for k, v in good.items()}, **{k: v[0] for k, v in bad.items()}})

    first = run_job_process("--input", "s3://archive/raw/", "--output", "s3://archive/sr/", "--max-failure-rate",
                            "0.2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    summary = summary_of(first)
    assert (summary["images"], summary["ok"], summary["failed"], summary["skipped"]) == (24, 20, 4, 0)
    assert summary["failure_rate"] == pytest.approx(4 / 24)
    assert "report.html" in first.stdout

    outputs = list_objects("archive", "sr")
    expected_keys = {k.rsplit(".", 1)[0] + {"jpg": ".jpg", "webp": ".webp", "tif": ".tif"}.get(k.rsplit(".", 1)[1],
                                                                                             ".png") for k in good}
    assert set(outputs) == expected_keys
    for key, (_, (w, h), mode) in good.items():
        out_key = next(k for k in expected_keys if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0])
        picture = decode(get_object("archive", f"sr/{out_key}"), out_key)
        assert picture.size == (4 * w, 4 * h), out_key
        assert picture.mode == mode, out_key  # RGBA, L and 16-bit survive

    rows = _report_rows(summary)
    assert len(rows) == 24
    for key, (_, phrase) in bad.items():
        row = rows[f"s3://archive/raw/{key}"]
        assert row["status"] == "failed" and row["output_bytes"] is None
        assert f"s3://archive/raw/{key}" in row["error"] and phrase in row["error"], row["error"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert all(r["model"] == "srcore-compact-x4-gan@realism=0.5" and r["scale"] == 4 and r["device"].startswith("cpu")
               for r in ok)
    assert all(r["lr_psnr"] > 25 and r["upscale_s"] > 0 and r["write_s"] > 0 and r["node"] for r in ok)
    assert all(0 <= r["invented_share"] <= 1 for r in ok)  # the invention map's figure, every output
    assert {r["input_mode"] for r in ok} == {"RGB", "RGBA", "L", "RGB;16", "L;16"}
    html = get_object("archive", summary["report"].removeprefix("s3://archive/") + "/report.html").decode()
    assert "Failures (4)" in html and "bad/bomb.png" in html and "data:image/png;base64" in html
    assert "<img class='invented'" in html and "show invented detail" in html  # the map over the previews
    stored_summary = json.loads(get_object("archive", summary["report"].removeprefix("s3://archive/")
                                           + "/summary.json"))
    assert stored_summary["ok"] == 20

    # the same run again: everything finished is skipped, the bad files fail again, and the exit code
    # follows --max-failure-rate
    second = run_job("--input", "s3://archive/raw", "--output", "s3://archive/sr", "--max-failure-rate", "0.1")
    assert second.returncode == 1, second.stderr[-3000:]
    assert "over --max-failure-rate" in second.stderr
    again = summary_of(second)
    assert (again["ok"], again["skipped"], again["failed"]) == (0, 20, 4)
    assert list_objects("archive", "sr") == outputs  # untouched: same ETags and times


def test_bad_arguments_exit_2_with_the_reason(s3, tmp_path):
    result = run_job("--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and "no such folder or prefix" in result.stderr
    result = run_job("--input", str(tmp_path), "--output", str(tmp_path / "out"), "--model", "no-such-model")
    assert result.returncode == 2 and "no-such-model" in result.stderr
    result = run_job("--input", str(tmp_path), "--output", str(tmp_path / "o"), "--batch-size", "0")
    assert result.returncode == 2 and "--batch-size" in result.stderr
    (tmp_path / "a-file").write_text("")  # an output under a file: no folder can be made there (root or not)
    result = run_job("--input", str(tmp_path), "--output", str(tmp_path / "a-file" / "out"), "--model", "no-such")
    assert result.returncode == 2 and "cannot write there" in result.stderr and "no-such" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "130 interrupted" in " ".join(run_job("--help").stdout.split())


def test_a_killed_run_resumes_and_processes_every_image_exactly_once(s3):
    good = {f"img_{i:02d}.png": v for i, v in enumerate(good_images(30, seed=1).values())
            if v[2] == "RGB" and v[0][:4] == b"\x89PNG"}
    files = {k: v[0] for k, v in good.items()}
    # more than enough images that the job is still running when a few outputs exist
    for i in range(40 - len(files)):
        files[f"more_{i:02d}.png"] = next(iter(files.values()))
    make_bucket("resume", "in", files)
    args = ["--input", "s3://resume/in", "--output", "s3://resume/out", "--images-per-batch", "2"]

    # a Ray of its own, killed with it: on the shared head, its workers could write for a moment after the kill
    proc = subprocess.Popen(job_command(*args), cwd=ROOT, env=private_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list_objects("resume", "out")) < 3:
        assert proc.poll() is None and time.time() < deadline, "the job ended before it could be stopped"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job: driver, local Ray, its workers
    proc.wait()
    time.sleep(1)
    first = list_objects("resume", "out")
    assert 3 <= len(first) < len(files)
    first_runs = {read_provenance(get_object("resume", f"out/{k}"))["run"] for k in first}
    assert len(first_runs) == 1

    result = run_job(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(result)
    rows = _report_rows(summary)
    skipped = {r["input"].removeprefix("s3://resume/in/") for r in rows.values() if r["status"] == "skipped"}
    done = {r["input"].removeprefix("s3://resume/in/") for r in rows.values() if r["status"] == "ok"}
    assert skipped == set(first) and done == set(files) - set(first) and summary["failed"] == 0

    final = list_objects("resume", "out")
    assert set(final) == set(files)  # none missing
    assert {k: final[k] for k in first} == first  # the first run's outputs untouched
    for key in final:
        provenance = read_provenance(get_object("resume", f"out/{key}"))
        assert provenance["run"] == (first_runs.copy().pop() if key in first else summary["run"])


def test_a_killed_driver_on_a_cluster_costs_only_its_work_in_flight(s3):
    """Only the driver is killed (SIGKILL), as when the machine that submitted a job dies; the cluster lives on
    and ends the job's workers. The rerun takes over the dead driver's lease at once (same host, its process
    gone), leaves the finished outputs alone, redoes what was in flight, and answers every input once."""
    files = {key: data for key, (data, _, _) in good_images(24, seed=4).items() if data[:4] == b"\x89PNG"}
    make_bucket("driverkill", "in", files)
    args = ["--input", "s3://driverkill/in", "--output", "s3://driverkill/out", "--images-per-batch", "1"]
    proc = subprocess.Popen(job_command(*args), cwd=ROOT, env=os.environ.copy(),  # joins the shared head
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list_objects("driverkill", "out")) < 2:
        assert proc.poll() is None and time.time() < deadline, "the job ended before it could be stopped"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    first, settled = list_objects("driverkill", "out"), 0
    while settled < 3:  # until the cluster has ended the dead driver's workers: nothing written for 3 s
        time.sleep(1)
        now = list_objects("driverkill", "out")
        settled, first = (settled + 1, first) if now == first else (0, now)
    assert 2 <= len(first) < len(files), len(first)

    result = run_job(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "took over the expired lease of run" in result.stdout
    summary = summary_of(result)
    rows = _report_rows(summary)
    assert len(rows) == len(files) == summary["images"]
    skipped = {r["input"].removeprefix("s3://driverkill/in/") for r in rows.values() if r["status"] == "skipped"}
    done = {r["input"].removeprefix("s3://driverkill/in/") for r in rows.values() if r["status"] == "ok"}
    assert skipped == set(first) and done == set(files) - set(first) and summary["failed"] == 0
    final = list_objects("driverkill", "out")
    assert set(final) == set(files) and {k: final[k] for k in first} == first  # none missing, none rewritten
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    assert not [k for k in fs.find("driverkill/out") if k.endswith(".tmp")]
    for key in final:
        assert decode(get_object("driverkill", f"out/{key}")).size[0] == 4 * decode(files[key]).size[0]


def test_local_folders_work_the_same_and_overwrite_redoes_finished_outputs(tmp_path):
    source = tmp_path / "in"
    images = dict(list(good_images(3, seed=2).items()))
    names = {key: f"sub dir/ünï {i}.{key.rsplit('.', 1)[1]}" for i, key in enumerate(images)}
    for key, name in names.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(images[key][0])
    clash_folder(source / "coll")  # x.jpg x.jpeg x.png x.bmp x.tif: the names `srcore upscale` gives them
    catalogued_scans(source / "catalogue")  # caption, XMP identifier and rights, IPTC, GPS, 600 dpi
    out = tmp_path / "out"
    first = run_job_process("--input", str(source), "--output", str(out),
                            command=[str(Path(sys.executable).parent / "srcore"), "bucket"])
    assert first.returncode == 0, first.stderr[-3000:]
    # Ray's start-up lines stay in its logs (--verbose shows them): nothing on stderr reads like a failure
    assert not any(noise in first.stderr for noise in ("Ray cluster", "core_worker", "Progress bars", "WARNING")), \
        first.stderr
    assert sorted(p.name for p in (out / "coll").iterdir()) == expected_clash_outputs()
    for p in (out / "coll").iterdir():
        assert read_provenance(p.read_bytes())["source"].endswith(f"/coll/{clash_source(p.name)}")
    for name in ("scan.jpg", "scan.png", "scan.tif"):  # through the job's rows: decode, actor, encode
        assert_catalogue_kept(out / "catalogue" / name, 4, 4, "srcore-compact-x4-gan@realism=0.5")
    for key, name in names.items():
        written = next((out / "sub dir").glob(name.split("/")[1].rsplit(".", 1)[0] + ".*"))
        assert decode(written.read_bytes()).size == tuple(4 * v for v in images[key][1])
    first_run = summary_of(first)["run"]
    first_models = {read_provenance(p.read_bytes())["model"] for p in (out / "sub dir").iterdir()}
    assert first_models == {"srcore-compact-x4-gan@realism=0.5"}  # the default: the bundled pair, half way
    # the rerun turns the realism knob to the GAN model, named in provenance
    second = run_job("--input", str(source), "--output", str(out), "--overwrite", "--realism", "1",
                     "--progress-interval", "1")
    assert second.returncode == 0, second.stderr[-3000:]
    # a line every second, on time between batches too (results come 8 images at a time, seconds apart)
    elapsed = [int(m.group(1)) * 60 + int(m.group(2))
               for m in re.finditer(r"\| 0:(\d\d):(\d\d) elapsed", second.stdout)]
    assert len(elapsed) >= 4 and elapsed[-1] >= 4, second.stdout
    assert max(b - a for a, b in itertools.pairwise(elapsed)) <= 2, second.stdout  # 1 s, and rounding
    assert "last result" in second.stdout  # a heartbeat line, between results
    summary = summary_of(second)
    assert (summary["ok"], summary["skipped"]) == (11, 0)
    provenance = [read_provenance(p.read_bytes()) for p in (out / "sub dir").iterdir()]
    runs = {p["run"] for p in provenance}
    assert runs == {summary["run"]} and first_run not in runs
    assert {p["model"] for p in provenance} == {"srcore-compact-x4-gan@realism=1"} == {summary["model"]}
    assert (out / "_reports" / summary["run"] / "report.html").exists()


def test_a_large_output_is_streamed_into_the_bucket_as_the_cli_writes_it(s3, tmp_path):
    """An output over --stream-output-pixels (here 1 MP: 400x400 x4 = 2.56 MP; the default is 64 MP): the
    actor writes the PNG a tile row at a time into a multipart upload (uncompressed: 7.7 MB, two parts); the
    object equals the CLI's file with the same options byte for byte."""
    import numpy as np
    from PIL import Image

    import srcore
    from srcore.options import EngineOptions, OutputOptions
    from srcore.upscale import upscale_file

    yy, xx = np.mgrid[0:400, 0:400]
    pixels = np.dstack([(xx // 9) % 256, (yy // 7) % 256, (xx + yy) % 256]).astype(np.uint8)
    src = tmp_path / "big.png"
    Image.fromarray(pixels).save(src)
    make_bucket("huge", "in", {"big.png": src.read_bytes()})
    options = ["--stream-output-pixels", "1000000", "--png-compression", "0"]
    result = run_job("--input", "s3://huge/in", "--output", "s3://huge/out", "--model", "srcore-compact-x4",
                     "--tile", "128", *options)
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(iter(_report_rows(summary_of(result)).values()))
    assert row["status"] == "ok" and (row["output_width"], row["output_height"]) == (1600, 1600), row
    assert row["lr_psnr"] > 25 and row["output_bytes"] > 5 << 20  # several multipart parts
    data = get_object("huge", "out/big.png")
    assert len(data) == row["output_bytes"] and read_provenance(data[:65536])["run"] == summary_of(result)["run"]
    assert list(list_objects("huge", "out")) == ["big.png"]  # no temporary left beside it

    upscaler = EngineOptions(tile=128).build(srcore.load_model("srcore-compact-x4"), "cpu")
    local, size = upscale_file(upscaler, src, tmp_path / "cli", "srcore-compact-x4",
                               OutputOptions(stream_output_pixels=1_000_000, png_compression=0))
    assert size == (1600, 1600)
    assert decode(local.read_bytes()).pixels.tobytes() == decode(data).pixels.tobytes()
