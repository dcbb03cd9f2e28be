"""Packaging: what the wheel declares matches what the code imports."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
OWN = {"srcore", "pipelines"}
LOADED_BY_NAME = {"s3fs": "fsspec loads it for s3:// locations"}  # dependencies no module imports by name


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0])


def third_party_imports(*packages: str) -> dict[str, set[str]]:
    """Top-level modules imported (absolutely, anywhere in a file) by the packages' code -> the files."""
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_declared_dependencies_match_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    extras = {name: {requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    user_extras = set().union(*(v for k, v in extras.items() if k != "dev"))
    dists = packages_distributions()
    imported = third_party_imports("srcore", "pipelines")
    providers = {module: {normalize(d) for d in dists.get(module, [])} for module in imported}
    declared = core | user_extras | extras["dev"]
    undeclared = {m: sorted(files) for m, files in imported.items() if not providers[m] & declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    dev_only = {m: sorted(files) for m, files in imported.items()
                if providers[m] & extras["dev"] and not providers[m] & (core | user_extras)}
    # only the loopback S3 server helper (tests, demo, benches) may need the dev extra
    assert set().union(*dev_only.values()) <= {"pipelines/local_s3.py"}, dev_only
    used = set().union(*providers.values()) | set(LOADED_BY_NAME)
    unused = core - used
    assert not unused, f"declared in dependencies but imported nowhere in srcore/ or pipelines/: {unused}"


def test_the_package_ships_its_data_and_a_command():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["srcore"] == "srcore.cli:main"
    data = project["tool"]["setuptools"]["package-data"]["srcore"]
    for pattern in data:
        assert list((ROOT / "srcore").glob(pattern)), pattern  # every pattern ships something


def module_level_imports(package: str) -> dict[str, set[str]]:
    """Third-party top-level modules imported at module level (not inside a function) -> the files."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - OWN:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_core_needs_no_extra_and_the_pipelines_only_the_ray_extra_at_import():
    """`pip install srcore` alone imports srcore; `srcore[ray]` imports pipelines. Every other extra's module is
    imported where it is used, so a missing one is a one-line error naming the extra (srcore.extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    ray_extra = {requirement_name(r) for r in project["optional-dependencies"]["ray"]}
    dists = packages_distributions()
    for package, allowed in (("srcore", core), ("pipelines", core | ray_extra)):
        for module, files in module_level_imports(package).items():
            if package == "pipelines" and files <= {"pipelines/local_s3.py"}:
                continue  # the loopback server of tests, demo and benches (the dev extra)
            providers = {normalize(d) for d in dists.get(module, [])}
            assert providers & allowed, f"{sorted(files)} import {module} at module level, outside {package}'s " \
                                        f"dependencies ({sorted(providers)})"
