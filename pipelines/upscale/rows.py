"""Arrow schemas of the rows that flow through the job: manifest, decoded, report."""

from __future__ import annotations

import pyarrow as pa

REPORT_SCHEMA = pa.schema([
    ("input", pa.string()), ("output", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("input_version", pa.string()), ("input_bytes", pa.int64()), ("input_width", pa.int32()),
    ("input_height", pa.int32()), ("input_mode", pa.string()), ("input_format", pa.string()),
    ("output_bytes", pa.int64()), ("output_width", pa.int32()), ("output_height", pa.int32()),
    ("output_mode", pa.string()), ("output_format", pa.string()), ("model", pa.string()), ("scale", pa.float32()),
    ("lr_psnr", pa.float32()), ("invented_share", pa.float32()), ("read_s", pa.float32()), ("decode_s", pa.float32()),
    ("upscale_s", pa.float32()),
    ("encode_s", pa.float32()), ("write_s", pa.float32()),
    ("check_s", pa.float32()), ("store_retries", pa.int32()), ("node", pa.string()), ("device", pa.string()),
    ("run", pa.string()),
    # rasters (srcore.geo) fill all four; images bands and dtype
    ("crs", pa.string()), ("bands", pa.int16()), ("dtype", pa.string()), ("nodata_fraction", pa.float32()),
    # videos (srcore.video) fill these: flicker is the output's frame-to-frame change over bicubic's
    ("frames", pa.int32()), ("duration_s", pa.float32()), ("segments", pa.int32()), ("failed_segments", pa.int32()),
    ("frames_per_s", pa.float32()), ("flicker", pa.float32()),
])
# what the driver plans: one row per input of this run
MANIFEST_SCHEMA = pa.schema([
    ("input", pa.string()), ("output", pa.string()), ("input_key", pa.string()), ("output_key", pa.string()),
    ("input_version", pa.string()), ("input_bytes", pa.int64()), ("model", pa.string()), ("scale", pa.float32()),
    ("run", pa.string()), ("output_format", pa.string()), ("status", pa.string()),
])
# the source's catalogue (srcore.imageio.Picture's metadata), carried to the stage that encodes the output
_METADATA = [("source_mode", pa.string()), ("icc_profile", pa.binary()), ("exif", pa.binary()), ("text", pa.string()),
             ("xmp", pa.binary()), ("photoshop", pa.binary()), ("dpi", pa.list_(pa.float64()))]
# what flows from the decode tasks to the actors (split layout): the report columns so far, and the decoded
# picture (or a JPEG's bytes, ``data``, for the GPU to decode; or, for a georeferenced raster, which the actor
# reads window by window itself, raster=True and no pixels)
DECODED_SCHEMA = pa.schema(list(REPORT_SCHEMA) + [
    ("input_key", pa.string()), ("output_key", pa.string()), ("raster", pa.bool_()),
    ("pixels", pa.large_binary()), ("pixel_dtype", pa.string()), ("shape", pa.list_(pa.int32())),
    ("data", pa.large_binary()), *_METADATA,
])
# what flows from the actors to the encode tasks (split layout): status "upscaled" with the output's pixels, or
# its file when the GPU encoded it (``encoded``), and the source's metadata; finished rows as they are
UPSCALED_SCHEMA = pa.schema(list(REPORT_SCHEMA) + [
    ("output_key", pa.string()), ("output_pixels", pa.large_binary()), ("output_dtype", pa.string()),
    ("output_shape", pa.list_(pa.int32())), ("encoded", pa.large_binary()), *_METADATA,
])


def table_of(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Row dicts as a table of ``schema`` (keys it lacks are dropped, columns a row lacks are null)."""
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: cast where present, nulls where not."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
