"""Georeferenced rasters (GeoTIFF, COG, JPEG 2000) through rasterio/GDAL: read with their georeferencing,
nodata and masks; upscale every band; write with the georeferencing scaled so the bounds stay the same.

The rules, stated once:
- **Transform**: the output's affine transform is the input's times ``Affine.scale(1 / s)``: the same
  origin, pixels ``s`` times smaller, identical bounds; rotated transforms included. GCPs keep their
  ground coordinates and move to ``s`` times their pixel coordinates (pixel corners, as GDAL counts them).
- **Values**: integer dtypes map into [0, 1] by their full range (uint8 /255, uint16 /65535, int16 shifted
  by 32768), float bands by the valid pixels' 0.1-99.9 percentile stretch; the mapping is inverted on the
  way out, so the output has the input's dtype. The stretch of a float band is recorded in the output's
  tags (``SRCORE_STRETCH_<band>``).
- **Nodata**: pixels that are nodata (the nodata value, an internal mask, or an alpha band of 0) are filled
  from their valid neighbours (GDAL's FillNodata) before the network sees them; the output is nodata
  exactly where the nearest-upsampled input mask is (data that comes out equal to the nodata value moves
  to the nearest other value), and the nodata value stays in the profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

GEO_SUFFIXES = (".tif", ".tiff", ".jp2")
_STRETCH = (0.1, 99.9)


@dataclass
class Raster:
    """A raster read whole: ``bands`` (C, H, W) in the file's dtype, ``valid`` (H, W) True where any band
    has data, and what the output needs from the input's profile."""

    bands: np.ndarray
    valid: np.ndarray
    crs: object | None
    transform: object  # affine.Affine
    gcps: list = field(default_factory=list)
    gcps_crs: object | None = None
    nodata: float | None = None
    descriptions: tuple = ()
    colorinterp: tuple = ()
    tags: dict = field(default_factory=dict)
    band_tags: list = field(default_factory=list)
    scales: tuple = ()
    offsets: tuple = ()
    driver: str = "GTiff"

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None or bool(self.gcps) or not self.transform.is_identity


def read_raster(data: bytes, name: str = "raster") -> Raster:
    """A raster from the bytes of a GeoTIFF, COG or JPEG 2000 file (MemoryFile: no temporary file)."""
    from rasterio.io import MemoryFile

    with MemoryFile(data) as memory, memory.open() as src:
        bands = src.read()
        masks = src.read_masks()  # 0 where nodata, the internal mask or alpha say so, per band
        gcps, gcps_crs = src.gcps
        return Raster(
            bands=bands, valid=(masks > 0).any(axis=0), crs=src.crs, transform=src.transform,
            gcps=list(gcps), gcps_crs=gcps_crs, nodata=src.nodata, descriptions=src.descriptions,
            colorinterp=src.colorinterp, tags=src.tags(), band_tags=[src.tags(i + 1) for i in range(src.count)],
            scales=src.scales, offsets=src.offsets, driver=src.driver)


def to_unit(bands: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(C, H, W) values -> float32 in [0, 1] and, per band, the (low, high) that maps to 0 and 1."""
    out = np.empty(bands.shape, np.float32)
    ranges = []
    for i, band in enumerate(bands):
        if np.issubdtype(band.dtype, np.integer):
            info = np.iinfo(band.dtype)
            low, high = float(info.min), float(info.max)
        else:
            values = band[valid & np.isfinite(band)]
            low, high = (np.percentile(values, _STRETCH).astype(float).tolist() if values.size else (0.0, 1.0))
            high = high if high > low else low + 1.0
        ranges.append((low, high))
        out[i] = (band.astype(np.float64) - low) / (high - low)
    np.clip(out, 0, 1, out=out)
    return out, ranges


def from_unit(unit: np.ndarray, ranges: list[tuple[float, float]], dtype: np.dtype) -> np.ndarray:
    """The inverse of :func:`to_unit`, rounded and clipped to ``dtype``."""
    values = np.stack([u.astype(np.float64) * (high - low) + low for u, (low, high) in zip(unit, ranges,
                                                                                           strict=True)])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def fill_nodata(unit: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Nodata pixels filled from their valid neighbours (GDAL FillNodata), band by band, so the network never
    sees the nodata value as image content. A band with no valid pixel is left as it is."""
    from rasterio.fill import fillnodata

    if valid.all() or not valid.any():
        return unit
    mask = valid.astype(np.uint8)
    distance = max(unit.shape[1:])  # reach every hole, however far from data
    return np.stack([fillnodata(band.copy(), mask=mask, max_search_distance=distance) for band in unit])


def upscale_raster(raster: Raster, upscale: Callable[[np.ndarray], np.ndarray], scale: int) -> Raster:
    """Every band of ``raster`` through ``upscale`` ((C, H, W) float32 in [0, 1] -> (C, sH, sW)), back to the
    input's dtype, with the georeferencing scaled and the nodata region kept (nearest-upsampled)."""
    from affine import Affine
    from rasterio.control import GroundControlPoint

    unit, ranges = to_unit(raster.bands, raster.valid)
    out = upscale(fill_nodata(unit, raster.valid))
    if out.shape[1:] != (unit.shape[1] * scale, unit.shape[2] * scale):
        raise ValueError(f"the upscaler gave {out.shape[1:]} for {unit.shape[1:]} at x{scale}")
    bands = from_unit(out, ranges, raster.bands.dtype)
    valid = raster.valid.repeat(scale, axis=0).repeat(scale, axis=1)
    if raster.nodata is not None:  # data that came out equal to the nodata value would read as nodata
        bands[(bands == raster.nodata) & valid] = _next_to(raster.nodata, bands.dtype)
    if not valid.all():
        bands[:, ~valid] = raster.nodata if raster.nodata is not None else 0
    tags = dict(raster.tags)
    for i, (low, high) in enumerate(ranges):
        if not np.issubdtype(raster.bands.dtype, np.integer):
            tags[f"SRCORE_STRETCH_{i + 1}"] = f"{low!r} {high!r}"
    gcps = [GroundControlPoint(row=g.row * scale, col=g.col * scale, x=g.x, y=g.y, z=g.z, id=g.id, info=g.info)
            for g in raster.gcps]
    return Raster(bands=bands, valid=valid, crs=raster.crs, transform=raster.transform @ Affine.scale(1 / scale),
                  gcps=gcps, gcps_crs=raster.gcps_crs, nodata=raster.nodata, descriptions=raster.descriptions,
                  colorinterp=raster.colorinterp, tags=tags, band_tags=raster.band_tags, scales=raster.scales,
                  offsets=raster.offsets, driver=raster.driver)


def _next_to(nodata: float, dtype: np.dtype):
    """The value nearest ``nodata`` that is not it, inside ``dtype``."""
    if np.issubdtype(dtype, np.integer):
        return nodata + 1 if nodata < np.iinfo(dtype).max else nodata - 1
    return np.nextafter(dtype.type(nodata), dtype.type(np.inf))


def write_geotiff(raster: Raster, provenance: dict[str, str] | None = None) -> bytes:
    """A tiled, DEFLATE-compressed GeoTIFF of ``raster`` (predictor by dtype), georeferencing and band
    metadata kept; ``provenance`` goes into the dataset tags (``SRCORE_*``)."""
    from rasterio.io import MemoryFile

    count, height, width = raster.bands.shape
    dtype = raster.bands.dtype
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype.name,
        "crs": raster.crs, "transform": raster.transform, "nodata": raster.nodata, "compress": "deflate",
        "predictor": 3 if np.issubdtype(dtype, np.floating) else 2, "tiled": True,
        "blockxsize": 256, "blockysize": 256, "BIGTIFF": "IF_SAFER",
    }
    if width < 256 or height < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    if raster.gcps:
        profile.pop("transform")
    from rasterio.env import Env

    with Env(GDAL_TIFF_INTERNAL_MASK=True), MemoryFile() as memory:
        with memory.open(**profile) as dst:
            if raster.gcps:
                dst.gcps = (raster.gcps, raster.gcps_crs)
            dst.write(raster.bands)
            if raster.nodata is None and not raster.valid.all():  # the input's mask was internal: so is ours
                dst.write_mask(np.where(raster.valid, 255, 0).astype(np.uint8))
            dst.update_tags(**raster.tags, **{f"SRCORE_{k.upper()}": v for k, v in (provenance or {}).items()})
            for i in range(count):
                if i < len(raster.descriptions) and raster.descriptions[i]:
                    dst.set_band_description(i + 1, raster.descriptions[i])
                if i < len(raster.band_tags) and raster.band_tags[i]:
                    dst.update_tags(i + 1, **raster.band_tags[i])
            if raster.colorinterp and len(raster.colorinterp) == count:
                dst.colorinterp = raster.colorinterp
            if raster.scales and len(raster.scales) == count:
                dst.scales = raster.scales
                dst.offsets = raster.offsets
        return memory.read()


def read_if_georeferenced(data: bytes, name: str) -> Raster | None:
    """The raster of a TIFF/JPEG 2000 file that carries georeferencing (CRS, transform or GCPs), else None:
    plain TIFFs keep the image path. None too when rasterio (the ``geo`` extra) is not installed."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return None
    try:
        raster = read_raster(data, name)
    except Exception:  # not a raster GDAL reads: the image decoder says why
        return None
    return raster if raster.georeferenced else None


def network_bands(upscaler, rgb: tuple[int, ...] | None = None, others: str = "network"
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """An upscale function for :func:`upscale_raster` from an RGB :class:`srcore.inference.Upscaler`.

    ``rgb``: the three bands (1-based, e.g. Sentinel-2 B04, B03, B02 as 4,3,2 of a 4-band file) that feed
    the network as R, G, B; default the first three of a file with three or more bands, none for one or two.
    ``others``: every other band ``"network"`` (as gray: repeated into R, G and B, the mean taken back) or
    ``"bicubic"``.
    """
    import cv2

    if others not in ("network", "bicubic"):
        raise ValueError(f"others must be 'network' or 'bicubic', got {others!r}")

    def upscale(unit: np.ndarray) -> np.ndarray:
        count = unit.shape[0]
        chosen = [b - 1 for b in rgb] if rgb else ([0, 1, 2] if count >= 3 else [])
        if chosen and (len(chosen) != 3 or min(chosen) < 0 or max(chosen) >= count):
            raise ValueError(f"--bands {rgb}: need three band numbers of 1..{count}")
        s = upscaler.scale
        out = np.empty((count, unit.shape[1] * s, unit.shape[2] * s), np.float32)
        if chosen:
            out[chosen] = np.moveaxis(upscaler.upscale_array(np.ascontiguousarray(np.moveaxis(unit[chosen], 0, -1))),
                                      -1, 0)
        for band in (b for b in range(count) if b not in chosen):
            if others == "bicubic":
                out[band] = np.clip(cv2.resize(unit[band], None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC), 0, 1)
            else:
                gray = np.repeat(unit[band][..., None], 3, axis=-1)
                out[band] = upscaler.upscale_array(gray).mean(axis=-1)
        return out

    return upscale
