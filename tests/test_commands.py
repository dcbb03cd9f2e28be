"""`srcore bucket|train|evaluate|prepare` and the jobs/ scripts: one parser each, so the same flags; `srcore
--help` lists every command; bundled configs load by name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from command_helpers import load_job, run_main, srcore_cli

from srcore.train.config import ConfigError, bundled_configs, load_config

ROOT = Path(__file__).resolve().parents[1]
SRCORE = str(Path(sys.executable).parent / "srcore")
PAIRS = {"bucket": "upscale_bucket.py", "train": "train.py", "evaluate": "evaluate.py", "prepare": "prepare_dataset.py"}
EXPECTED = {"bucket": {"--input", "--output", "--input-manifest", "--model", "--realism", "--tile", "--stage-layout",
                       "--max-failure-rate", "--stream-output-pixels"},
            "train": {"--config", "--list-configs", "--resume", "--fresh"},
            "evaluate": {"--model", "--scale", "--sets", "--data-root", "--out", "--no-reference"},
            "prepare": {"--input", "--output", "--crop", "--step", "--thresh", "--max-failure-rate"}}


def flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", help_text))


def test_each_srcore_command_takes_exactly_its_jobs_flags():
    """Both routes' --help. The bucket pair runs as users run it, in two processes; the other pairs call the
    same mains in this process (each process would cost seconds of imports for the same parser)."""
    cli = subprocess.Popen([SRCORE, "bucket", "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    job = subprocess.Popen([sys.executable, "jobs/upscale_bucket.py", "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    helps = {}
    for command, script in PAIRS.items():
        if command != "bucket":
            job_main = load_job(Path(script).stem).main
            by_job = run_main(job_main, ["--help"], ["python", f"jobs/{script}"])
            helps[command] = (srcore_cli(command, "--help"), by_job)
    cli_out, cli_err = cli.communicate(timeout=300)
    job_out, job_err = job.communicate(timeout=300)
    helps["bucket"] = (subprocess.CompletedProcess(cli.args, cli.returncode, cli_out, cli_err),
                       subprocess.CompletedProcess(job.args, job.returncode, job_out, job_err))
    assert set(helps) == set(PAIRS)
    for command, (by_cli, by_job) in helps.items():
        assert by_cli.returncode == 0 and by_job.returncode == 0, by_cli.stderr + by_job.stderr
        assert by_cli.stdout.startswith(f"usage: srcore {command} "), by_cli.stdout[:200]
        assert flags(by_cli.stdout) == flags(by_job.stdout), (command, flags(by_cli.stdout) ^ flags(by_job.stdout))
        assert EXPECTED[command] <= flags(by_cli.stdout), (command, EXPECTED[command] - flags(by_cli.stdout))


def test_the_bucket_flags_are_the_job_options():
    """The bucket command's flags cover UpscaleJob's fields and the engine's and outputs' dataclasses."""
    from dataclasses import fields

    from pipelines.commands import bucket, parser_for
    from srcore.options import EngineOptions, OutputOptions

    parser = parser_for(bucket.__doc__, "srcore bucket")
    bucket.add_arguments(parser)
    known = {a.dest for a in parser._actions}
    for options in (EngineOptions, OutputOptions):
        assert {f.name for f in fields(options)} <= known, options


def test_srcore_help_lists_every_command_in_one_line_each():
    result = subprocess.run([SRCORE, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    listed = dict(re.findall(r"^    (\w+) +(\S.*)$", result.stdout, re.M))
    assert set(listed) == {"models", "upscale", "evaluate", "weights", "bucket", "train", "prepare"}, result.stdout
    assert "(unavailable" not in result.stdout


def test_bundled_configs_load_by_name_as_by_path(tmp_path, monkeypatch):
    names = bundled_configs()
    assert {"default-model", "srcore-compact-x4-gan", "realesrgan-gan", "rrdbnet-psnr-df2k",
            "distill-x4plus"} <= set(names)
    monkeypatch.setenv("SRCORE_SHARED", str(tmp_path))  # the configs' data paths need not exist to load
    by_name = load_config("default-model")
    assert by_name == load_config("default-model.yaml") == load_config(ROOT / "configs" / "default-model.yaml")
    with pytest.raises(ConfigError, match=r"no-such-config: no such file, and no bundled config .*default-model"):
        load_config("no-such-config")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")  # a path is never looked up by name
