"""Georeferenced rasters through srcore.geo: rasters the tests write with rasterio (no data files), upscaled
by a plain bicubic so the checks are about georeferencing, dtypes, bands and nodata, not the network (the
CLI's and the window tests run a real, tiny network)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402
from geo_helpers import CASES, UTM, check_georeferenced_output, make_raster  # noqa: E402

from srcore import geo  # noqa: E402
from srcore.geo import gdal_env, open_raster, upscale_scene  # noqa: E402

SCALE = 2


def bicubic(unit: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(cv2.resize(b, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC), 0, 1)
                     for b in unit])


def upscaled(tmp_path, spec: dict, upscale=None, scale: int = SCALE, **options) -> tuple:
    """(input path, output path, SceneResult) for a raster made from ``spec`` and upscaled by srcore.geo."""
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    source.write_bytes(make_raster(**spec))
    with gdal_env(), open_raster(str(source)) as src:
        result = upscale_scene(src, str(target), upscale or bicubic, scale, margin=4,
                               tags={"model": "bicubic"}, **options)
    return source, target, result


@pytest.mark.parametrize("case", sorted(CASES))
def test_georeferencing_dtype_bands_and_nodata_survive_upscaling(case, tmp_path):
    spec = CASES[case]
    source, target, result = upscaled(tmp_path, spec)
    check_georeferenced_output(source, target, spec, SCALE)
    assert (result.bands, result.dtype) == (spec["count"], spec["dtype"])
    border = spec.get("border", 0)
    assert result.nodata_fraction == pytest.approx(1 - (40 - border) * (48 - border) / (40 * 48))


def test_values_map_to_unit_and_back_by_the_dtype_range_or_a_recorded_stretch(tmp_path):
    from srcore.geo import from_unit, stretch_of, to_unit

    bands = np.array([[[0, 1000, 65535]]], np.uint16)
    ranges = [(0.0, 65535.0)]
    assert np.array_equal(from_unit(to_unit(bands, ranges), ranges, np.uint16), bands)
    reflectance = np.linspace(0, 1, 1000, dtype=np.float32).reshape(1, 10, 100)
    ranges = [stretch_of(reflectance.ravel())]
    assert 0 < ranges[0][0] < 0.01 and 0.99 < ranges[0][1] < 1
    back = from_unit(to_unit(reflectance, ranges), ranges, np.float32)
    inside = (reflectance >= ranges[0][0]) & (reflectance <= ranges[0][1])
    assert np.allclose(back[inside], reflectance[inside], atol=1e-6)
    # a scene's stretch is recorded in its tags, where it can be undone
    _, target, result = upscaled(tmp_path, CASES["float32-6-mask"])
    with rasterio.open(target) as dst:
        low, high = map(float, dst.tags()["SRCORE_STRETCH_1"].split())
    assert (low, high) == pytest.approx(result.stretch[0]) and 0 <= low < high <= 0.6 + 1e-6


def tiny_upscaler(scale: int = 2, **engine):
    import torch

    import srcore

    torch.manual_seed(0)
    return srcore.Upscaler(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1, upscale=scale),
                           precision="fp32", runtime="torch", **engine)


def test_windows_meet_without_seams_and_memory_follows_the_window(tmp_path, monkeypatch):
    """A scene cut into many windows (each read with half the engine's overlap as margin) upscales within
    one uint16 step of 1/255 of the same scene in one window: no seams where windows meet."""
    upscaler = tiny_upscaler(tile=None)
    spec = dict(dtype="uint16", count=4, crs=UTM, transform=Affine(10, 0, 500000, 0, -10, 4600000), nodata=0,
                border=9, size=(150, 230))
    source = tmp_path / "scene.tif"
    source.write_bytes(make_raster(**spec))
    outputs = {}
    for name, window_bytes in (("whole", 1 << 30), ("windows", 4 * 4 * (64 * 2) ** 2)):
        monkeypatch.setattr(geo, "WINDOW_OUTPUT_BYTES", window_bytes)
        with gdal_env(), open_raster(str(source)) as src:
            result = upscale_scene(src, str(tmp_path / f"{name}.tif"), geo.network_bands(upscaler), 2,
                                   margin=upscaler.overlap // 2)
        with rasterio.open(tmp_path / f"{name}.tif") as dst:
            outputs[name] = dst.read().astype(np.int64)
        assert result.windows == (1 if name == "whole" else 3 * 4)
    assert np.abs(outputs["whole"] - outputs["windows"]).max() <= 65535 / 255


def test_a_cog_is_valid_and_keeps_georeferencing_and_nodata(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    spec = dict(CASES["utm-uint16-4"], size=(300, 340))
    source, target, _ = upscaled(tmp_path, spec, cog=True)
    valid, errors, _ = cog_validate(str(target))
    assert valid, errors
    check_georeferenced_output(source, target, spec, SCALE)
    with rasterio.open(target) as dst:
        assert dst.overviews(1) and dst.profile["tiled"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]  # no intermediate left


def test_the_cli_keeps_a_geotiffs_georeferencing_bands_dtype_and_nodata(tmp_path):
    """``srcore upscale`` on a 4-band uint16 UTM GeoTIFF with a nodata border (the case that failed as "not a
    recognised image format"): a GeoTIFF out, every band through the bundled-architecture network."""
    import torch
    from command_helpers import srcore_cli

    import srcore

    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1, upscale=2),
                                tmp_path / "tiny.safetensors")
    spec = CASES["utm-uint16-4"]
    (tmp_path / "scene.tif").write_bytes(make_raster(**spec))
    result = srcore_cli("upscale", str(tmp_path / "scene.tif"), "-o", str(tmp_path / "out"), "--model", str(weights))
    assert result.returncode == 0, result.stderr[-2000:]
    with rasterio.open(tmp_path / "scene.tif") as src, rasterio.open(tmp_path / "out" / "scene.tif") as dst:
        assert (dst.count, dst.dtypes, dst.crs, dst.nodata) == (4, src.dtypes, src.crs, 0)
        assert dst.transform.almost_equals(src.transform @ Affine.scale(1 / 2), precision=1e-9)
        tags = dst.tags()
        assert tags["SRCORE_MODEL"].startswith("tiny.safetensors@") and "AI-upscaled" in tags["SRCORE_NOTICE"]
        valid_out = (dst.read_masks() > 0).any(axis=0)
        assert np.array_equal(valid_out, (src.read_masks() > 0).any(axis=0).repeat(2, 0).repeat(2, 1))
        # an untrained network gives zeros too: data equal to the nodata value would read as nodata
        assert (dst.read()[:, ~valid_out] == 0).all() and (dst.read()[:, valid_out] != 0).all()


def test_a_jpeg2000_band_file_keeps_its_georeferencing(tmp_path):
    """Sentinel-2 L2A band files are JPEG 2000 (GDAL's JP2OpenJPEG driver, bundled with rasterio)."""
    from rasterio.shutil import copy as copy_raster

    spec = dict(dtype="uint16", count=1, crs=UTM, transform=Affine(10, 0, 600000, 0, -10, 5100000))
    (tmp_path / "b04.tif").write_bytes(make_raster(**spec))
    copy_raster(tmp_path / "b04.tif", tmp_path / "B04.jp2", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE=True)
    with gdal_env(), open_raster(str(tmp_path / "B04.jp2")) as src:
        assert src.driver == "JP2OpenJPEG"
        upscale_scene(src, str(tmp_path / "out.tif"), bicubic, SCALE, margin=4)
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert dst.crs == UTM and dst.dtypes == ("uint16",) and dst.driver == "GTiff"
        assert dst.transform.almost_equals(spec["transform"] @ Affine.scale(1 / SCALE), precision=1e-9)


def test_bands_formats_and_bad_choices_through_upscale_file(tmp_path):
    """``--bands 3,2,1 --other-bands bicubic --format cog`` as the CLI passes them; a wrong band number, a
    format that would drop georeferencing, or an --outscale off the grid fail naming the file."""
    from rio_cogeo.cogeo import cog_validate

    from srcore.options import OutputOptions
    from srcore.provenance import read_provenance
    from srcore.upscale import upscale_file

    upscaler = tiny_upscaler()
    scene = tmp_path / "scene.tif"
    scene.write_bytes(make_raster(**CASES["utm-uint16-4"]))
    options = OutputOptions(bands="3,2,1", other_bands="bicubic", format="cog")
    target, size = upscale_file(upscaler, scene, tmp_path / "out", "tiny", options)
    assert target.name == "scene.tif" and size == (96, 80)
    assert cog_validate(str(target))[0]
    with rasterio.open(target) as dst:
        assert (dst.tags()["SRCORE_BANDS_RGB"], dst.tags()["SRCORE_OTHER_BANDS"]) == ("3,2,1", "bicubic")
    # the same XMP provenance as every other output: what a rerun reads to skip finished outputs
    provenance = read_provenance(target.read_bytes())
    assert provenance["model"] == "tiny" and provenance["source"] == scene.resolve().as_posix()
    for options, phrase in ((OutputOptions(bands="9,2,1"), "the raster has 4 bands"),
                            (OutputOptions(format="png"), "would drop its georeferencing"),
                            (OutputOptions(outscale=3), "--outscale is not applied")):
        with pytest.raises(ValueError, match=phrase) as error:
            upscale_file(upscaler, scene, tmp_path / "bad", "tiny", options)
        assert str(scene) in str(error.value)
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="--bands must be three band numbers"):
        OutputOptions(bands="4,3")


def test_nan_in_a_float_band_is_nodata_and_stays_nan(tmp_path):
    """Float rasters often mark missing data with NaN and declare no nodata value: NaN never reaches the
    network (the rest of the output is finite) and stays NaN in the output, nearest-upsampled."""
    spec = dict(dtype="float32", count=3, crs=UTM, transform=Affine(20, 0, 300000, 0, -20, 5000000))
    source = tmp_path / "in.tif"
    source.write_bytes(make_raster(**spec))
    with rasterio.open(source, "r+") as dst:
        bands = dst.read()
        bands[:, 10:14, 20:30] = np.nan
        dst.write(bands)
    with gdal_env(), open_raster(str(source)) as src:
        result = upscale_scene(src, str(tmp_path / "out.tif"), geo.network_bands(tiny_upscaler()), 2, margin=8)
    with rasterio.open(tmp_path / "out.tif") as dst:
        out = dst.read()
    hole = np.zeros((40, 48), bool)
    hole[10:14, 20:30] = True
    assert np.isnan(out[:, hole.repeat(2, 0).repeat(2, 1)]).all()
    assert np.isfinite(out[:, ~hole.repeat(2, 0).repeat(2, 1)]).all()
    assert result.nodata_fraction == pytest.approx(40 / (40 * 48))


def test_scratch_rasters_of_dead_actors_are_removed_and_live_ones_kept(tmp_path):
    """An actor killed mid-scene leaves its scratch GeoTIFF (gigabytes) on the node; the next actor removes
    it, and never one whose writer is still alive."""
    import subprocess
    import sys

    from pipelines.upscale.stages import SCRATCH_PREFIX, remove_dead_scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f"{SCRATCH_PREFIX}{dead}-abc.tif").write_bytes(b"x" * 1000)
    (tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def.tif").write_bytes(b"y")
    (tmp_path / f"{SCRATCH_PREFIX}{dead}-recent.tif").write_bytes(b"w")  # touched lately: kept
    (tmp_path / "other.tif").write_bytes(b"z")
    for name in (f"{SCRATCH_PREFIX}{dead}-abc.tif", f"{SCRATCH_PREFIX}{os.getpid()}-def.tif", "other.tif"):
        os.utime(tmp_path / name, (0, 0))
    assert remove_dead_scratch(str(tmp_path)) == [f"{SCRATCH_PREFIX}{dead}-abc.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{SCRATCH_PREFIX}{os.getpid()}-def.tif",
                                                                 f"{SCRATCH_PREFIX}{dead}-recent.tif", "other.tif"])


def test_without_the_geo_extra_images_and_plain_tiffs_work_as_before(tmp_path, monkeypatch):
    """rasterio is an extra: without it no input touches GDAL, and PNGs and TIFFs take the image path."""
    import sys

    from PIL import Image

    from srcore import upscale

    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio raises ImportError
    upscale.geo_installed.cache_clear()
    try:
        assert not upscale.may_be_raster("scene.tif")
        pixels = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
        for name in ("photo.png", "scan.tif"):
            Image.fromarray(pixels).save(tmp_path / name)
            target, size = upscale.upscale_file(tiny_upscaler(), tmp_path / name, tmp_path / "out", "tiny")
            assert size == (48, 40) and target.suffix == Path(name).suffix
    finally:
        upscale.geo_installed.cache_clear()
