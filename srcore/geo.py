"""Georeferenced rasters (GeoTIFF, COG, JPEG 2000) through rasterio/GDAL, window by window: any scene size in
bounded memory, the georeferencing scaled so the bounds stay the same, every band and dtype, nodata kept.

The rules, stated once:
- **Windows**: the scene is read, upscaled and written in windows whose float32 output for all bands is at
  most :data:`WINDOW_OUTPUT_BYTES`; each window is read with a margin of half the engine's tile overlap (the
  context the engine's own tiles give every pixel) and the margin's output is dropped, so windows meet
  without seams. GDAL's block cache is held to :data:`GDAL_CACHE_MB`. Memory per scene is therefore bounded
  by the window, not the scene.
- **Transform**: the output's affine transform is the input's times ``Affine.scale(1 / s)``: the same
  origin, pixels ``s`` times smaller, identical bounds; rotated transforms included. GCPs keep their ground
  coordinates and move to ``s`` times their pixel coordinates (pixel corners, as GDAL counts them); RPCs,
  which count pixel centres, map a centre ``u`` to ``s u + (s - 1) / 2``. Either way a ground point falls on
  the same place of the image.
- **Values**: integer dtypes map into [0, 1] by their full range (uint8 /255, uint16 /65535, int16 shifted
  by 32768), float bands by the valid pixels' 0.1-99.9 percentile stretch (taken from a decimated read of
  the scene); the mapping is inverted on the way out, so the output has the input's dtype. A float band's
  stretch is recorded in the output's tags (``SRCORE_STRETCH_<band>``) and returned for the report.
- **Nodata**: pixels that are nodata (the nodata value, an internal mask, an alpha band of 0, or a float
  that is not finite) are filled from valid neighbours (GDAL's FillNodata, within the window's margin;
  further ones take the valid mean) before the network sees them. The output is nodata exactly where the
  nearest-upsampled input mask is (data that comes out equal to the nodata value moves to the nearest other
  value); the nodata value stays in the profile, an internal mask stays internal, alpha bands are upsampled
  nearest, and a float band without a nodata value keeps NaN there.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

GEO_SUFFIXES = (".tif", ".tiff", ".jp2")
OTHER_BANDS = ("network", "bicubic")
WINDOW_OUTPUT_BYTES = 256 << 20  # float32 output of one window, all bands
GDAL_CACHE_MB = 256  # GDAL's default block cache is 5% of RAM: gigabytes on a big node, per worker
_STRETCH = (0.1, 99.9)
_STRETCH_SAMPLE = 2048  # the float stretch comes from a read decimated to at most this many pixels a side


def gdal_env(**options):
    """The GDAL settings every srcore raster read and write runs under."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_TIFF_INTERNAL_MASK=True,
                        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", **options)


def open_raster(path: str, opener=None):
    """A rasterio dataset for a local path, or for a path inside an fsspec filesystem (``opener``: s3fs and
    the rest, with the store's own credentials and endpoint). Use inside :func:`gdal_env`."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, opener=opener)


def is_georeferenced(src) -> bool:
    """Does a dataset carry georeferencing (a CRS, a non-identity transform, GCPs or RPCs)?"""
    return src.crs is not None or bool(src.gcps[0]) or src.rpcs is not None or not src.transform.is_identity


@dataclass
class SceneResult:
    """What one upscaled scene was, for the report: its CRS (``EPSG:...`` or WKT), bands, dtype, the
    fraction of its pixels that are nodata, and each float band's stretch."""

    width: int
    height: int
    bands: int
    dtype: str
    crs: str | None
    nodata_fraction: float
    windows: int
    stretch: list[tuple[float, float]] = field(default_factory=list)


def value_ranges(src) -> list[tuple[float, float]]:
    """Per band, the (low, high) that map to 0 and 1: the dtype's range, or for floats the valid pixels'
    0.1-99.9 percentiles on a decimated read (bounded memory whatever the scene's size)."""
    dtype = np.dtype(src.dtypes[0])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return [(float(info.min), float(info.max))] * src.count
    step = max(1, math.ceil(max(src.height, src.width) / _STRETCH_SAMPLE))
    shape = (max(1, src.height // step), max(1, src.width // step))
    bands = src.read(out_shape=(src.count, *shape))
    valid = (src.read_masks(1, out_shape=shape) > 0)
    return [stretch_of(band[valid & np.isfinite(band)]) for band in bands]


def stretch_of(values: np.ndarray) -> tuple[float, float]:
    if not values.size:
        return 0.0, 1.0
    low, high = np.percentile(values, _STRETCH).astype(float).tolist()
    return low, (high if high > low else low + 1.0)


def to_unit(bands: np.ndarray, ranges: list[tuple[float, float]]) -> np.ndarray:
    """(C, H, W) values -> float32 in [0, 1] by each band's (low, high)."""
    out = np.empty(bands.shape, np.float32)
    for i, (band, (low, high)) in enumerate(zip(bands, ranges, strict=True)):
        out[i] = (band.astype(np.float64) - low) / (high - low)
    return np.clip(out, 0, 1, out=out)


def from_unit(unit: np.ndarray, ranges: list[tuple[float, float]], dtype: np.dtype) -> np.ndarray:
    """The inverse of :func:`to_unit`, rounded and clipped to ``dtype``."""
    out = np.empty(unit.shape, dtype)
    for i, (u, (low, high)) in enumerate(zip(unit, ranges, strict=True)):
        values = u.astype(np.float64) * (high - low) + low
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        out[i] = values
    return out


def fill_nodata(unit: np.ndarray, valid: np.ndarray, reach: int) -> np.ndarray:
    """Nodata pixels filled from valid neighbours within ``reach`` pixels (GDAL FillNodata), the rest with the
    band's valid mean, so the network never sees the nodata value as image content."""
    from rasterio.fill import fillnodata

    if valid.all():
        return unit
    if not valid.any():  # a window of nodata only: its output is all nodata, the network sees zeros
        return np.zeros_like(unit)
    out = unit.copy()
    mask = valid.astype(np.uint8)
    for band in out:
        band[~valid] = band[valid].mean()
        band[:] = fillnodata(band, mask=mask, max_search_distance=max(1, reach))
    return out


def window_side(bands: int, scale: int) -> int:
    """Input pixels a side of a window whose float32 output for ``bands`` bands fits :data:`WINDOW_OUTPUT_BYTES`."""
    side = int(math.sqrt(WINDOW_OUTPUT_BYTES / (4 * bands))) // scale
    return max(64, min(2048, side // 16 * 16))


def _scaled_rpcs(rpcs, scale: int):
    from rasterio.rpc import RPC

    values = rpcs.to_dict()  # RPC image coordinates are of pixel centres: centre u -> s u + (s - 1) / 2
    for axis in ("line", "samp"):
        values[f"{axis}_off"] = values[f"{axis}_off"] * scale + (scale - 1) / 2
        values[f"{axis}_scale"] = values[f"{axis}_scale"] * scale
    return RPC(**values)


def _output_profile(src, scale: int) -> dict:
    from affine import Affine

    dtype = np.dtype(src.dtypes[0])
    width, height = src.width * scale, src.height * scale
    profile = {"driver": "GTiff", "width": width, "height": height, "count": src.count, "dtype": dtype.name,
               "crs": src.crs, "nodata": src.nodata, "compress": "deflate", "BIGTIFF": "IF_SAFER",
               "predictor": 3 if np.issubdtype(dtype, np.floating) else 2}
    if not src.transform.is_identity or not (src.gcps[0] or src.rpcs):
        profile["transform"] = src.transform @ Affine.scale(1 / scale)
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def upscale_scene(src, path: str, upscale: Callable[[np.ndarray], np.ndarray], scale: int, *, margin: int,
                  cog: bool = False, tags: dict[str, str] | None = None, xmp: bytes | None = None,
                  progress: Callable[[int, int], None] | None = None) -> SceneResult:
    """Upscale every band of the open dataset ``src`` into a GeoTIFF (``cog``: a Cloud-Optimized GeoTIFF with
    overviews) at the local ``path``, window by window (the module's rules). ``upscale``: (C, H, W) float32
    in [0, 1] -> (C, sH, sW); ``margin``: input pixels of context around each window; ``tags``: dataset tags
    added (provenance); ``xmp``: an XMP packet (TIFF tag 700, where srcore reads provenance back from any
    output); ``progress(done, total)`` after each window. Run it inside :func:`gdal_env`."""
    from rasterio.enums import ColorInterp, MaskFlags
    from rasterio.windows import Window

    if len(set(src.dtypes)) != 1:
        raise ValueError(f"bands of different dtypes ({', '.join(src.dtypes)}) are not supported")
    dtype = np.dtype(src.dtypes[0])
    ranges = value_ranges(src)
    floats = np.issubdtype(dtype, np.floating)
    alpha = [i for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
    data_bands = [i + 1 for i in range(src.count) if i not in alpha] or None  # an alpha band's own mask is all valid
    internal_mask = src.nodata is None and not alpha and any(
        MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)
    side = window_side(src.count, scale)
    starts = [(r, c) for r in range(0, src.height, side) for c in range(0, src.width, side)]
    invalid_pixels = 0
    written = path + ".gtiff.part" if cog else path
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():  # GCP- and RPC-referenced outputs have no transform, as their inputs
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dst = rasterio.open(written, "w", **_output_profile(src, scale))
        with dst:
            gcps, gcps_crs = src.gcps
            if gcps:
                dst.gcps = ([_scaled_gcp(g, scale) for g in gcps], gcps_crs)
            if src.rpcs is not None:
                dst.rpcs = _scaled_rpcs(src.rpcs, scale)
            for done, (row, col) in enumerate(starts, 1):
                h, w = min(side, src.height - row), min(side, src.width - col)
                top, left = max(0, row - margin), max(0, col - margin)
                bottom, right = min(src.height, row + h + margin), min(src.width, col + w + margin)
                read = Window(left, top, right - left, bottom - top)
                bands = src.read(window=read)
                valid = (src.read_masks(data_bands, window=read) > 0).any(axis=0)
                if floats:  # NaN or inf where no mask says so is nodata too: it must not reach the network
                    valid &= np.isfinite(bands).all(axis=0)
                invalid_pixels += int((~valid[row - top:row - top + h, col - left:col - left + w]).sum())
                unit = fill_nodata(to_unit(bands, ranges), valid, max(margin, 16))
                out = upscale(unit)
                if out.shape != (src.count, unit.shape[1] * scale, unit.shape[2] * scale):
                    raise ValueError(f"the upscaler gave {out.shape} for {unit.shape} at x{scale}")
                y, x = (row - top) * scale, (col - left) * scale
                out = from_unit(out[:, y:y + h * scale, x:x + w * scale], ranges, dtype)
                keep = _nearest(valid[row - top:row - top + h, col - left:col - left + w], scale)
                for i in alpha:
                    out[i] = _nearest(bands[i, row - top:row - top + h, col - left:col - left + w], scale)
                if src.nodata is not None:  # data equal to the nodata value would read as nodata
                    out[(out == src.nodata) & keep] = _next_to(src.nodata, dtype)
                if not keep.all():
                    out[:, ~keep] = src.nodata if src.nodata is not None else (np.nan if floats else 0)
                target = Window(col * scale, row * scale, w * scale, h * scale)
                dst.write(out, window=target)
                if internal_mask:
                    dst.write_mask(np.where(keep, 255, 0).astype(np.uint8), window=target)
                if progress:
                    progress(done, len(starts))
            dst.update_tags(**src.tags())
            for i, (low, high) in enumerate(ranges):
                if floats:
                    dst.update_tags(**{f"SRCORE_STRETCH_{i + 1}": f"{low!r} {high!r}"})
            dst.update_tags(**{f"SRCORE_{k.upper()}": v for k, v in (tags or {}).items()})
            if xmp:
                dst.update_tags(ns="xml:XMP", **{"xml:XMP": xmp.decode()})
            for i in range(src.count):
                if src.descriptions[i]:
                    dst.set_band_description(i + 1, src.descriptions[i])
                if band_tags := src.tags(i + 1):
                    dst.update_tags(i + 1, **band_tags)
                if src.units[i]:
                    dst.set_band_unit(i + 1, src.units[i])
            dst.colorinterp = src.colorinterp
            dst.scales, dst.offsets = src.scales, src.offsets
        if cog:
            from rasterio.shutil import copy as copy_raster

            copy_raster(written, path, driver="COG", COMPRESS="DEFLATE", BIGTIFF="IF_SAFER",
                        PREDICTOR="FLOATING_POINT" if floats else "YES", OVERVIEW_RESAMPLING="AVERAGE")
    finally:
        if cog and os.path.exists(written):
            os.remove(written)
    return SceneResult(width=src.width, height=src.height, bands=src.count, dtype=dtype.name,
                       crs=src.crs.to_string() if src.crs else None,
                       nodata_fraction=invalid_pixels / max(1, src.width * src.height), windows=len(starts),
                       stretch=ranges if floats else [])


def _scaled_gcp(gcp, scale: int):
    from rasterio.control import GroundControlPoint

    return GroundControlPoint(row=gcp.row * scale, col=gcp.col * scale, x=gcp.x, y=gcp.y, z=gcp.z, id=gcp.id,
                              info=gcp.info)


def _nearest(array: np.ndarray, scale: int) -> np.ndarray:
    return array.repeat(scale, axis=-2).repeat(scale, axis=-1)


def _next_to(nodata: float, dtype: np.dtype):
    """The value nearest ``nodata`` that is not it, inside ``dtype``."""
    if np.issubdtype(dtype, np.integer):
        return nodata + 1 if nodata < np.iinfo(dtype).max else nodata - 1
    return np.nextafter(dtype.type(nodata), dtype.type(np.inf))


def parse_bands(value: str | None) -> tuple[int, int, int] | None:
    """``--bands 4,3,2``: the three 1-based band numbers that feed the network as R, G, B."""
    if value in (None, ""):
        return None
    try:
        bands = tuple(int(b) for b in str(value).split(","))
    except ValueError:
        bands = ()
    if len(bands) != 3 or min(bands) < 1:
        raise ValueError(f"--bands must be three band numbers from 1, e.g. 4,3,2; got {value!r}")
    return bands


def network_bands(upscaler, rgb: tuple[int, int, int] | None = None, others: str = "network"
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """An upscale function for :func:`upscale_scene` from an RGB :class:`srcore.inference.Upscaler`.

    ``rgb``: the three bands (1-based, e.g. Sentinel-2 B04, B03, B02 as 4,3,2 of a 4-band file) that feed
    the network as R, G, B; default the first three of a file with three or more bands, none for one or two.
    ``others``: every other band ``"network"`` (as a gray image, :mod:`srcore.modes`' one rule) or
    ``"bicubic"``.
    """
    import cv2

    if others not in OTHER_BANDS:
        raise ValueError(f"--other-bands must be 'network' or 'bicubic', got {others!r}")

    def upscale(unit: np.ndarray) -> np.ndarray:
        count = unit.shape[0]
        chosen = [b - 1 for b in rgb] if rgb else ([0, 1, 2] if count >= 3 else [])
        if chosen and max(chosen) >= count:
            raise ValueError(f"--bands {','.join(map(str, rgb))}: the raster has {count} bands")
        s = upscaler.scale
        out = np.empty((count, unit.shape[1] * s, unit.shape[2] * s), np.float32)
        if chosen:
            rgb_pixels = np.ascontiguousarray(np.moveaxis(unit[chosen], 0, -1))
            out[chosen] = np.moveaxis(upscaler.upscale_network_input(rgb_pixels), -1, 0)
        for band in (b for b in range(count) if b not in chosen):
            if others == "bicubic":
                out[band] = np.clip(cv2.resize(unit[band], None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC), 0, 1)
            else:  # gray as every gray image: through the network as R = G = B, BT.601 luma back
                out[band] = upscaler.upscale_image(np.ascontiguousarray(unit[band][..., None]))[..., 0]
        return out

    return upscale
