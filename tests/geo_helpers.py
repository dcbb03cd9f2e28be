"""Georeferenced rasters the tests write with rasterio (no data files in the repo), and the issue's checks on
an upscaled one. Import after ``pytest.importorskip("rasterio")``."""

from __future__ import annotations

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.rpc import RPC


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


def check_georeferenced_output(source, target, spec: dict, scale: int, model: str = "bicubic") -> None:
    """The issue's checks: CRS, transform (times scale(1/s)), bounds, GCPs/RPCs, dtype, bands, descriptions,
    nodata value and region."""
    with rasterio.open(source) as src, rasterio.open(target) as dst:
        assert (dst.width, dst.height) == (src.width * scale, src.height * scale)
        assert dst.crs == src.crs and dst.dtypes == src.dtypes and dst.count == src.count
        assert dst.descriptions == src.descriptions and dst.nodata == src.nodata
        assert dst.colorinterp == src.colorinterp
        assert dst.tags()["SRCORE_MODEL"].startswith(model)
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


