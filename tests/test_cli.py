"""The srcore command line: ``main(argv)`` in this process with its output captured (a process adds ~5 s of
imports per call and asserts nothing more), and ``python -m srcore.cli`` as users run it in test_version."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from command_helpers import clash_folder, clash_source, expected_clash_outputs, srcore_cli
from PIL import Image

import srcore
from srcore.provenance import read_provenance


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
    assert "2 of 4 inputs upscaled" in result.stdout and "2 failed" in result.stdout
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["good.webp", "sub/gray.webp"]  # nothing partial, sub-folders kept
    assert Image.open(out / "good.webp").size == (20, 24)


def test_upscale_errors_before_any_work(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "a.png")
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
    assert again.returncode == 0 and "0 of 2 inputs upscaled, 2 already done" in again.stdout
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "a_out.png", "b.png", "b_out.png"]
    assert {p: p.stat().st_mtime_ns for p in photos.glob("*_out.png")} == made

    # an input rewritten since is made again; --overwrite redoes the rest
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), np.uint8)).save(photos / "b.png")
    again = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_out", "--model", str(weights))
    assert "1 of 2 inputs upscaled, 1 already done" in again.stdout
    again = srcore_cli("upscale", str(photos / "?.png"), "-o", str(tmp_path / "other"), "--model", str(weights))
    assert "2 of 2 inputs upscaled" in again.stdout  # an absolute glob (it was NotImplementedError)
    again = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_out", "--model", str(weights),
                       "--overwrite")
    assert "2 of 2 inputs upscaled, 0 already done" in again.stdout


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


def readme_table(start: str, end: str) -> dict[str, str]:
    """The README's option table between two headings or lines: option -> its default column."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index(start):readme.index(end, readme.index(start))]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `([^`]+)` \| ([^|]+) \|", line)
        if match:
            rows[match.group(1).split(" ")[0].split(",")[0]] = match.group(2).strip()
    return rows


def assert_table_is_the_help(rows: dict[str, str], parser, leave_out: set[str] = frozenset()) -> None:
    """Every option of ``parser`` (but ``leave_out``) is a row, with its default where it has one; no others."""
    options = {a.option_strings[0]: a for a in parser._actions
               if a.option_strings and a.dest != "help" and a.option_strings[0] not in leave_out}
    assert set(rows) == set(options), (set(rows) ^ set(options))
    for flag, action in options.items():
        if isinstance(action.default, (int, float, str)) and not isinstance(action.default, bool) and action.default:
            assert rows[flag] == str(action.default), (flag, rows[flag], action.default)
        if action.default is None and action.required:
            assert rows[flag] == "required", flag


def test_readme_tables_match_the_help_of_upscale_and_the_bucket_job():
    """The README says each option's default from the code: `srcore upscale`'s table, and the bucket job's
    table of its own options (it shares upscale's output and engine flags, which that table gives)."""
    import argparse
    from dataclasses import fields

    from pipelines.commands.bucket import add_arguments
    from srcore.cli import build_parser
    from srcore.options import EngineOptions, OutputOptions

    upscale = build_parser()._subparsers._group_actions[0].choices["upscale"]
    assert_table_is_the_help(readme_table("## Upscaling files and folders", "### Which bundled model"), upscale)
    bucket = argparse.ArgumentParser()
    add_arguments(bucket)
    shared = {"--" + f.name.replace("_", "-") for f in fields(OutputOptions) + fields(EngineOptions)}
    assert_table_is_the_help(readme_table("Its options: `--model`", "Steady state"), bucket,
                             shared | {"--model", "--realism"})


def test_inputs_that_would_share_a_name_get_one_output_each_as_in_the_bucket_job(tmp_path):
    """x.jpg and x.jpeg both want x.jpg, x.png and x.bmp both want x.png: each gets a short hash of its own name
    (srcore.naming, the bucket job's rule; test_upscale_bucket runs the job over the same folder)."""
    weights = tiny_weights(tmp_path)
    clash_folder(tmp_path / "in" / "coll")  # as the job's test lays it out: in/coll/x.jpg ...
    out = tmp_path / "out"
    result = srcore_cli("upscale", str(tmp_path / "in"), "-o", str(out), "--model", str(weights))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (out / "coll").iterdir())
    assert written == expected_clash_outputs(), written
    assert "5 of 5 inputs upscaled" in result.stdout and "4 output(s) carry a short hash" in result.stdout
    for name in written:  # each output is its own input's
        assert read_provenance((out / "coll" / name).read_bytes())["source"].endswith(f"/coll/{clash_source(name)}")
    again = srcore_cli("upscale", str(tmp_path / "in"), "-o", str(out), "--model", str(weights))
    assert "0 of 5 inputs upscaled, 5 already done" in again.stdout
    # two folders' x.png through globs (one name each, no sub-folder to tell them apart), one of them twice
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(tmp_path / folder / "x.png")
    globs = [str(tmp_path / "a" / "*.png"), str(tmp_path / "b" / "*.png"), str(tmp_path / "a" / "x.png")]
    result = srcore_cli("upscale", *globs, "-o", str(tmp_path / "ab"), "--model", str(weights))
    assert result.returncode == 0 and "2 of 2 inputs upscaled" in result.stdout, result.stdout
    sources = {read_provenance(p.read_bytes())["source"] for p in (tmp_path / "ab").iterdir()}
    assert sources == {(tmp_path / f / "x.png").resolve().as_posix() for f in "ab"}
    # scan.tif and scan.jpg as --format jpg: two outputs, not one
    scans = tmp_path / "scans"
    scans.mkdir()
    for suffix in ("tif", "jpg"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(scans / f"scan.{suffix}")
    result = srcore_cli("upscale", str(scans), "-o", str(tmp_path / "jpg"), "--format", "jpg", "--model", str(weights))
    assert result.returncode == 0 and len(list((tmp_path / "jpg").iterdir())) == 2


def test_bad_inputs_and_outputs_exit_2_before_the_model_loads(tmp_path):
    """Each case names what is wrong; the missing weights file is never reached (it would be the error)."""
    folder = clash_folder(tmp_path / "coll")
    no_model = ("--model", str(tmp_path / "absent.pth"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = {
        "missing input": ([str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")], "nope.png: no such file or folder"),
        "empty glob": ([str(folder / "*.webp"), "-o", str(tmp_path / "o")], "*.webp matches no file"),
        "empty folder": ([str(blocker.parent / "empty"), "-o", str(tmp_path / "o")], None),
        "unwritable output": ([str(folder), "-o", str(blocker / "out")], "cannot write there"),
        "file for a folder": ([str(folder), "-o", str(tmp_path / "lincoln_x4.png")], "names a file, but 5 inputs"),
    }
    (tmp_path / "empty").mkdir()
    cases["empty folder"] = ([str(tmp_path / "empty"), "-o", str(tmp_path / "o")], "empty holds no image")
    for case, (argv, says) in cases.items():
        result = srcore_cli("upscale", *argv, *no_model)
        assert result.returncode == 2, (case, result.stderr)
        assert says in result.stderr and "absent.pth" not in result.stderr, (case, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)  # one line, no traceback
    assert not (tmp_path / "lincoln_x4.png").exists() and not (tmp_path / "o").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = srcore_cli("upscale", str(folder), "-o", str(locked), *no_model)
        assert result.returncode == 2 and "cannot write there" in result.stderr
    # one input and a file name: that file, in the format its name says
    weights = tiny_weights(tmp_path)
    result = srcore_cli("upscale", str(folder / "x.png"), "-o", str(tmp_path / "lincoln_x4.jpg"), "--model",
                        str(weights))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "lincoln_x4.jpg").format == "JPEG"
    help_text = srcore_cli("upscale", "--help").stdout
    assert "130 interrupted" in " ".join(help_text.split()) and "2 bad arguments" in " ".join(help_text.split())


def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing_half_written(tmp_path):
    import signal
    import time

    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(3)
    count = 160  # ~30 s of work uninterrupted: the interrupt comes long before the end
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    # as a shell starts it: SIGINT at its default (a test runner's worker may ignore it, and an ignored signal
    # stays ignored across exec, so Python would install no KeyboardInterrupt handler)
    proc = subprocess.Popen([sys.executable, "-m", "srcore.cli", "upscale", str(folder), "-o", str(out),
                             "--runtime", "torch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(out.glob("*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("interrupted:") and "resumes" in last
    finished = list(out.iterdir())
    assert 0 < len(finished) < count and all(not p.name.startswith(".") for p in finished)  # no temporaries
    assert all(Image.open(p).size == (512, 512) for p in finished)  # each whole


def test_upscale_keeps_each_scans_catalogue(tmp_path):
    """test_imageio checks every field per format; here the command's outputs, as files (the bucket job's are
    checked in test_upscale_bucket)."""
    from catalogue_helpers import assert_catalogue_kept, catalogued_scans

    weights = tiny_weights(tmp_path)
    scans = catalogued_scans(tmp_path / "scans")
    out = tmp_path / "out"
    result = srcore_cli("upscale", str(tmp_path / "scans"), "-o", str(out), "--model", str(weights), "--dpi", "keep")
    assert result.returncode == 0, result.stderr
    for fmt in scans:
        assert_catalogue_kept(out / f"scan.{'tif' if fmt == 'tif' else fmt}", 4, 1)
