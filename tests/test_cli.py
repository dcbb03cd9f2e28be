"""The srcore command line: ``main(argv)`` in this process with its output captured (a process adds ~5 s of
imports per call and asserts nothing more), and ``python -m srcore.cli`` as users run it in test_version."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from command_helpers import srcore_cli
from PIL import Image

import srcore


def test_models_lists_the_registry():
    result = srcore_cli("models")
    assert result.returncode == 0
    assert all(name in result.stdout for name in srcore.list_models())


def test_upscale_folders_formats_failures_and_summary(tmp_path):
    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1),
                                tmp_path / "tiny.safetensors")
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), np.uint8)).save(inputs / "good.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)).save(inputs / "sub" / "gray.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (inputs / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    result = srcore_cli("upscale", str(inputs), "-o", str(out), "--model", str(weights), "--format", "webp",
                        "--outscale", "2")
    assert result.returncode == 1  # some files failed
    assert "broken.png: truncated or corrupt" in result.stderr or "broken.png: not a recognised" in result.stderr
    assert "empty.png: empty file" in result.stderr
    assert "2 of 4 images upscaled" in result.stdout and "2 failed" in result.stdout
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["good.webp", "sub/gray.webp"]  # nothing partial, sub-folders kept
    assert Image.open(out / "good.webp").size == (20, 24)


def test_upscale_errors_before_any_work(tmp_path):
    (tmp_path / "in").mkdir()
    inputs, out = str(tmp_path / "in"), str(tmp_path / "o")
    result = srcore_cli("upscale", inputs, "-o", out, "--model", str(tmp_path / "no.pth"))
    assert result.returncode == 2
    assert "no.pth: no such weights file" in result.stderr
    result = srcore_cli("upscale", inputs, "-o", out, "--model", "x", "--quality", "0")
    assert result.returncode == 2 and "quality must be in 1..100" in result.stderr
    if not torch.cuda.is_available():
        result = srcore_cli("upscale", inputs, "-o", out, "--device", "cuda")
        assert result.returncode == 2 and "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    rrdb = srcore.save_model(srcore.create_model("realesrgan-x4plus", num_block=1), tmp_path / "rrdb.safetensors")
    result = srcore_cli("upscale", inputs, "-o", out, "--model", str(rrdb), "--tile", "128")
    assert result.returncode == 2 and "--tile-overlap" in result.stderr and "tile >= 480" in result.stderr


def tiny_weights(tmp_path):
    torch.manual_seed(0)
    return srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1),
                             tmp_path / "tiny.safetensors")


def test_upscale_never_writes_over_its_inputs_and_skips_finished_outputs(tmp_path):
    weights = tiny_weights(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), np.uint8)).save(photos / f"{name}.png")
    originals = {p.name: p.read_bytes() for p in photos.iterdir()}
    for out in (photos, photos / "up"):  # the input folder itself, or a folder inside it
        result = srcore_cli("upscale", str(photos), "-o", str(out), "--model", str(weights))
        assert result.returncode == 2 and "inside the input folder" in result.stderr and "--suffix" in result.stderr
    result = srcore_cli("upscale", str(photos / "*.png"), "-o", str(photos), "--model", str(weights))
    assert result.returncode == 2  # a glob's folder counts too
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == originals

    # --suffix: outputs beside the inputs; a rerun neither upscales the outputs again nor redoes finished ones
    result = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_out", "--model", str(weights))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "a_out.png", "b.png", "b_out.png"]
    assert Image.open(photos / "a_out.png").size == (48, 40)
    assert "model" in result.stderr and "tile" in result.stderr  # the header line
    # a warning is one line naming the image, not Python's file:line and source line
    jpeg = srcore_cli("upscale", str(photos / "a.png"), "-o", str(tmp_path / "jpeg"), "--format", "jpg",
                      "--model", str(weights), "--tile", "64", "--tile-overlap", "32")
    assert jpeg.returncode == 0, jpeg.stderr
    assert "warning: tile 64 with overlap 32 computes every output pixel" in jpeg.stderr
    assert "UserWarning" not in jpeg.stderr and "upscale.py:" not in jpeg.stderr
    made = {p: p.stat().st_mtime_ns for p in photos.glob("*_out.png")}
    again = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_out", "--model", str(weights))
    assert again.returncode == 0 and "0 of 2 images upscaled, 2 already done" in again.stdout
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "a_out.png", "b.png", "b_out.png"]
    assert {p: p.stat().st_mtime_ns for p in photos.glob("*_out.png")} == made

    # an input rewritten since is made again; --overwrite redoes the rest
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), np.uint8)).save(photos / "b.png")
    again = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_out", "--model", str(weights))
    assert "1 of 2 images upscaled, 1 already done" in again.stdout
    again = srcore_cli("upscale", str(photos / "?.png"), "-o", str(tmp_path / "other"), "--model", str(weights))
    assert "2 of 2 images upscaled" in again.stdout  # an absolute glob (it was NotImplementedError)
    again = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_out", "--model", str(weights),
                       "--overwrite")
    assert "2 of 2 images upscaled, 0 already done" in again.stdout


def test_version():
    """The module as a process: the one run of the command line as users start it."""
    result = subprocess.run([sys.executable, "-m", "srcore.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"srcore {srcore.__version__}"


def test_jpeg_of_rgba_is_composited_on_the_background_with_a_warning(tmp_path):
    weights = tiny_weights(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., 0] = 255  # red hidden under fully transparent pixels
    rgba[:, :6, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(inputs / "logo.png")
    for background, expected in (("white", (255, 255, 255)), ("#000000", (0, 0, 0))):
        out = tmp_path / background.strip("#")
        result = srcore_cli("upscale", str(inputs), "-o", str(out), "--model", str(weights), "--format", "jpg",
                            "--background", background)
        assert result.returncode == 0, result.stderr
        assert "JPEG has no alpha; composited on --background" in result.stderr
        right = np.asarray(Image.open(out / "logo.jpg").convert("RGB"))[:, 30:].reshape(-1, 3).mean(0)
        assert np.abs(right - expected).max() < 12, right  # the background, not the hidden red
    result = srcore_cli("upscale", str(inputs), "-o", str(tmp_path / "x"), "--background", "not-a-colour")
    assert result.returncode == 2 and "--background must be a colour" in result.stderr


def test_readme_table_matches_upscale_help():
    """Every `srcore upscale` option is in the README's table with its default, and the table has no others."""
    import re
    from pathlib import Path

    from srcore.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Command line"):readme.index("## Upscaling a bucket")]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `([^`]+)` \| ([^|]+) \|", line)
        if match:
            rows[match.group(1).split(" ")[0].split(",")[0]] = match.group(2).strip()
    upscale = build_parser()._subparsers._group_actions[0].choices["upscale"]
    options = {a.option_strings[0]: a for a in upscale._actions if a.option_strings and a.dest != "help"}
    assert set(rows) == set(options), (set(rows) ^ set(options))
    for flag, action in options.items():
        if isinstance(action.default, (int, float, str)) and not isinstance(action.default, bool) and action.default:
            assert rows[flag] == str(action.default), (flag, rows[flag], action.default)
