"""Georeferenced rasters through srcore.geo: rasters the tests write with rasterio (no data files), upscaled
by a plain bicubic so the checks are about georeferencing, dtypes, bands and nodata, not the network (the
CLI's and the window tests run a real, tiny network)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402
from rasterio.control import GroundControlPoint  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.io import MemoryFile  # noqa: E402
from rasterio.rpc import RPC  # noqa: E402

from srcore import geo  # noqa: E402
from srcore.geo import gdal_env, open_raster, upscale_scene  # noqa: E402

SCALE = 2


def bicubic(unit: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(cv2.resize(b, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC), 0, 1)
                     for b in unit])


def make_raster(dtype: str, count: int, *, crs=None, transform=None, gcps=None, rpcs=None, nodata=None,
                border: int = 0, internal_mask: bool = False, alpha: bool = False, size=(40, 48)) -> bytes:
    height, width = size
    rng = np.random.default_rng(count)
    smooth = np.stack([cv2.resize(rng.uniform(0, 1, (6, 7)).astype(np.float32), (width, height),
                                  interpolation=cv2.INTER_CUBIC) for _ in range(count)]).clip(0, 1)
    if np.issubdtype(np.dtype(dtype), np.integer):
        high = min(np.iinfo(dtype).max, 12000)
        bands = (10 + smooth * (high - 10)).astype(dtype)
    else:
        bands = (smooth * 0.6).astype(dtype)
    valid = np.ones((height, width), bool)
    if border:
        valid[:border], valid[:, :border] = False, False
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
        bands[:, ~valid] = nodata
    if alpha:  # RGBA: GDAL reads the fourth band as the mask
        bands[-1] = np.where(valid, np.iinfo(dtype).max, 0)
        profile.update(photometric="RGB", alpha="YES")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), MemoryFile() as memory:
        with memory.open(**profile) as dst:
            if gcps:
                dst.gcps = (gcps, crs)
            if rpcs:
                dst.rpcs = rpcs
            dst.write(bands)
            for i in range(count):
                dst.set_band_description(i + 1, f"band {i + 1}")
            if internal_mask:
                dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
        return memory.read()


UTM = CRS.from_epsg(32633)
CASES = {
    "utm-uint16-4": dict(dtype="uint16", count=4, crs=UTM, transform=Affine(10, 0, 500000, 0, -10, 4600000),
                         nodata=0, border=5),
    "wgs84-uint8-3": dict(dtype="uint8", count=3, crs=CRS.from_epsg(4326),
                          transform=Affine(0.001, 0, 12.5, 0, -0.001, 41.9)),
    "rotated-int16-1": dict(dtype="int16", count=1, crs=UTM,
                            transform=Affine.translation(500000, 4600000) @ Affine.rotation(20) @ Affine.scale(10, -10),
                            nodata=-9999, border=3),
    "float32-6-mask": dict(dtype="float32", count=6, crs=UTM, transform=Affine(20, 0, 300000, 0, -20, 5000000),
                           border=4, internal_mask=True),
    "gcps-uint16-3": dict(dtype="uint16", count=3, crs=CRS.from_epsg(4326), gcps=[
        GroundControlPoint(row=0, col=0, x=10.0, y=50.0), GroundControlPoint(row=0, col=48, x=10.5, y=50.0),
        GroundControlPoint(row=40, col=0, x=10.0, y=49.6), GroundControlPoint(row=40, col=48, x=10.5, y=49.6)]),
    "rpcs-uint16-1": dict(dtype="uint16", count=1, rpcs=RPC(
        height_off=100, height_scale=500, lat_off=45.0, lat_scale=0.02, long_off=7.0, long_scale=0.03,
        line_off=20, line_scale=20, samp_off=24, samp_scale=24,
        line_num_coeff=[0, 0, -1] + [0] * 17, line_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1] + [0] * 18, samp_den_coeff=[1] + [0] * 19)),
    "rgba-uint8-alpha": dict(dtype="uint8", count=4, crs=UTM, transform=Affine(30, 0, 400000, 0, -30, 4000000),
                             border=6, alpha=True),
}


def upscaled(tmp_path, spec: dict, upscale=None, scale: int = SCALE, **options) -> tuple:
    """(input path, output path, SceneResult) for a raster made from ``spec`` and upscaled by srcore.geo."""
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    source.write_bytes(make_raster(**spec))
    with gdal_env(), open_raster(str(source)) as src:
        result = upscale_scene(src, str(target), upscale or bicubic, scale, margin=4,
                               tags={"model": "bicubic"}, **options)
    return source, target, result


def check_georeferenced_output(source, target, spec: dict, scale: int = SCALE) -> None:
    """The issue's checks: CRS, transform (times scale(1/s)), bounds, GCPs/RPCs, dtype, bands, descriptions,
    nodata value and region."""
    with rasterio.open(source) as src, rasterio.open(target) as dst:
        assert (dst.width, dst.height) == (src.width * scale, src.height * scale)
        assert dst.crs == src.crs and dst.dtypes == src.dtypes and dst.count == src.count
        assert dst.descriptions == src.descriptions and dst.nodata == src.nodata
        assert dst.colorinterp == src.colorinterp
        assert dst.tags()["SRCORE_MODEL"] == "bicubic"
        if spec.get("gcps"):
            got, _ = dst.gcps
            assert [(g.row, g.col, g.x, g.y) for g in got] == [(g.row * scale, g.col * scale, g.x, g.y)
                                                               for g in spec["gcps"]]
        elif spec.get("rpcs"):  # the ground point of input pixel (r, c) is that of output pixel (s r, s c)
            from rasterio.transform import RPCTransformer

            with RPCTransformer(src.rpcs) as t_in, RPCTransformer(dst.rpcs) as t_out:
                lon, lat = t_in.xy([5.0, 30.5], [7.0, 40.0], offset="ul")
                rows, cols = t_out.rowcol(lon, lat, op=lambda v: v)
                assert np.allclose(rows, [10.0, 61.0], atol=1e-3) and np.allclose(cols, [14.0, 80.0], atol=1e-3)
        else:
            assert dst.transform.almost_equals(src.transform @ Affine.scale(1 / scale), precision=1e-9)
            pixel = abs(src.transform.a) + abs(src.transform.b)
            assert np.allclose(dst.bounds, src.bounds, atol=1e-6 * pixel)
        valid_in = (src.read_masks() > 0).any(axis=0)
        valid_out = (dst.read_masks() > 0).any(axis=0)
        assert np.array_equal(valid_out, valid_in.repeat(scale, 0).repeat(scale, 1))
        if src.nodata is not None:
            assert (dst.read()[:, ~valid_out] == src.nodata).all()
            # the network never saw the nodata value: the data next to the border is not pulled towards it
            inner, data = dst.read()[:, valid_out].astype(float), src.read()[:, valid_in].astype(float)
            assert inner.min() > data.min() - 0.05 * (np.ptp(data) + 1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_georeferencing_dtype_bands_and_nodata_survive_upscaling(case, tmp_path):
    spec = CASES[case]
    source, target, result = upscaled(tmp_path, spec)
    check_georeferenced_output(source, target, spec)
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
    check_georeferenced_output(source, target, spec)
    with rasterio.open(target) as dst:
        assert dst.overviews(1) and dst.profile["tiled"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]  # no intermediate left


def test_the_cli_keeps_a_geotiffs_georeferencing_bands_dtype_and_nodata(tmp_path):
    """``srcore upscale`` on a 4-band uint16 UTM GeoTIFF with a nodata border (the case that failed as "not a
    recognised image format"): a GeoTIFF out, every band through the bundled-architecture network."""
    import subprocess
    import sys

    import torch

    import srcore

    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1, upscale=2),
                                tmp_path / "tiny.safetensors")
    spec = CASES["utm-uint16-4"]
    (tmp_path / "scene.tif").write_bytes(make_raster(**spec))
    result = subprocess.run([sys.executable, "-m", "srcore.cli", "upscale", str(tmp_path / "scene.tif"), "-o",
                             str(tmp_path / "out"), "--model", str(weights)], capture_output=True, text=True)
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
