"""The bucket job over a prefix that mixes GeoTIFFs, a COG, a JPEG 2000 band file and photos, on the loopback
S3 server with a real local Ray: every georeferenced output keeps its georeferencing, bands, dtype and
nodata, and with ``--format cog`` passes ``rio cogeo validate``; photos come out as they always have."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

rasterio = pytest.importorskip("rasterio")
import s3fs  # noqa: E402
from bucket_helpers import get_object, good_images, list_objects, make_bucket, run_job, summary_of  # noqa: E402
from geo_helpers import CASES, check_georeferenced_output, make_raster  # noqa: E402
from rasterio.shutil import copy as copy_raster  # noqa: E402

from srcore.imageio import decode  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray"), pytest.mark.xdist_group("ray")]

GEO_INPUTS = {  # key -> the case it is made from, and the driver it is stored with
    "scenes/utm_uint16.tif": ("utm-uint16-4", "GTiff"),
    "scenes/wgs84_uint8.tif": ("wgs84-uint8-3", "GTiff"),
    "scenes/reflectance.tif": ("float32-6-mask", "GTiff"),
    "scenes/gcps.tif": ("gcps-uint16-3", "GTiff"),
    "scenes/cog/rotated.tif": ("rotated-int16-1", "COG"),
    "scenes/S2/B04.jp2": ("wgs84-uint8-3", "JP2OpenJPEG"),
}


def test_the_bucket_job_keeps_georeferencing_and_writes_valid_cogs_beside_photos(s3, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    files = {}
    for key, (case, driver) in GEO_INPUTS.items():
        plain = tmp_path / "plain.tif"
        plain.write_bytes(make_raster(**CASES[case]))
        made = tmp_path / key.replace("/", "_")
        if driver == "GTiff":
            made.write_bytes(plain.read_bytes())
        else:
            copy_raster(plain, made, driver=driver, **({"QUALITY": 100, "REVERSIBLE": True}
                                                       if driver == "JP2OpenJPEG" else {}))
        files[key] = made.read_bytes()
    photos = {k: v for k, v in good_images(8).items() if k.endswith((".png", ".jpg", ".tif"))}
    files.update({k: v[0] for k, v in photos.items()})
    # bad rasters fail alone, named: a GeoTIFF cut short, and a JPEG 2000 file that is not one
    bad = {"scenes/cut.tif": files["scenes/utm_uint16.tif"][:3000], "scenes/S2/B08.jp2": b"not a jp2 file"}

    make_bucket("geo", "raw", {**files, **bad})
    result = run_job("--input", "s3://geo/raw", "--output", "s3://geo/sr", "--format", "cog",
                     "--max-failure-rate", "0.2")
    summary = summary_of(result)
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    rows = {r["input"].removeprefix("s3://geo/raw/"): r for r in
            pq.read_table(summary["report"].removeprefix("s3://") + "/rows", filesystem=fs).to_pylist()}
    failed = {k: r["error"] for k, r in rows.items() if r["status"] == "failed"}
    assert result.returncode == 0 and set(failed) == set(bad), failed or result.stderr[-5000:]
    for key, error in failed.items():
        assert f"s3://geo/raw/{key}" in error, error
    assert (summary["ok"], summary["failed"]) == (len(files), len(bad)), summary
    outputs = list_objects("geo", "sr")
    for key, (case, driver) in GEO_INPUTS.items():
        out_key = key.rsplit(".", 1)[0] + ".tif"
        assert out_key in outputs, (key, sorted(outputs))
        source, target = tmp_path / f"in-{len(key)}", tmp_path / "out.tif"
        source.write_bytes(files[key])
        target.write_bytes(get_object("geo", f"sr/{out_key}"))
        check_georeferenced_output(source, target, CASES[case], 4, model="srcore-compact-x4")
        valid, errors, _ = cog_validate(str(target))
        assert valid, (key, errors)
        row = rows[key]
        spec = CASES[case]
        assert (row["bands"], row["dtype"], row["output_format"]) == (spec["count"], spec["dtype"], "COG"), row
        with rasterio.open(source) as src:
            assert row["crs"] == (src.crs.to_string() if src.crs else None)
            assert row["nodata_fraction"] == pytest.approx((src.read_masks(1) == 0).mean(), abs=1e-6)
        assert row["input_format"] == driver if driver != "COG" else row["input_format"] == "GTiff"
    for key, (_, (w, h), mode) in photos.items():
        out_key = key.rsplit(".", 1)[0] + "." + {"jpg": "jpg", "tif": "tif"}.get(key.rsplit(".", 1)[1], "png")
        picture = decode(get_object("geo", f"sr/{out_key}"), out_key)
        assert (picture.size, picture.mode) == ((4 * w, 4 * h), mode), key
        assert rows[key]["crs"] is None and rows[key]["bands"] == len(mode.split(";")[0])
    assert len(outputs) == len(files)  # no scratch or temporary left beside them

    # a rerun with the reports gone finds every output finished by its own provenance (XMP, as photos)
    s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True).rm(
        "geo/sr/_reports", recursive=True)
    again = run_job("--input", "s3://geo/raw", "--output", "s3://geo/sr", "--format", "cog",
                    "--max-failure-rate", "0.2")
    assert (summary_of(again)["skipped"], summary_of(again)["failed"]) == (len(files), len(bad)), again.stderr
    assert list_objects("geo", "sr") == outputs  # untouched
