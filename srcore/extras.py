"""The optional extras of ``pip install srcore[...]``: which one brings a missing module, in one line."""

from __future__ import annotations

# top-level module -> the extra that installs it (pyproject.toml's optional-dependencies)
EXTRA_OF = {
    "ray": "ray", "pyarrow": "ray", "s3fs": "ray", "fsspec": "ray",
    "gcsfs": "gcs",
    "rasterio": "geo", "affine": "geo", "rio_cogeo": "geo",
    "tensorboardX": "train", "tensorboard": "train",
    "h5py": "perceptual",
    "openvino": "openvino",
    "spandrel": "spandrel",
}


def missing_extra_message(exc: ImportError, what: str) -> str | None:
    """``what needs X: pip install 'srcore[extra]'`` when ``exc`` is a module an extra installs, else None."""
    module = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return f"{what} needs {module}, which is not installed: pip install 'srcore[{extra}]'"

