"""The repo installs as one import package, `vlmrl`, with every source folder listed."""

import subprocess
import sys
import tomllib
from pathlib import Path

import vlmrl

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_folder_is_a_listed_subpackage():
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools_cfg["packages"])
    # data-only packages (no __init__.py) are listed for their package-data
    data_only = {name for name in listed if name in setuptools_cfg["package-data"]
                 and not (ROOT / Path(*name.split(".")[1:]) / "__init__.py").exists()}
    assert data_only == {"vlmrl.configs"}
    on_disk = {"vlmrl"} | data_only
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] in {"tests", "benchmarks", ".venv", "build"} or any(p.startswith(".") for p in rel.parts):
            continue
        if rel.parts:
            on_disk.add("vlmrl." + ".".join(rel.parts))
    assert on_disk == listed, f"pyproject packages out of date: missing {on_disk - listed}, extra {listed - on_disk}"


def test_imports_as_vlmrl_not_bare_system(tmp_path):
    import importlib
    import importlib.util

    assert vlmrl.__version__
    assert importlib.import_module("vlmrl.system.config").VlmrlConfig
    # Outside the repo (the repo root on sys.path would make any folder importable), only `vlmrl` exists.
    probe = "import importlib.util as u; print(u.find_spec('system') is None, u.find_spec('vlmrl.system') is not None)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"], "a bare top-level `system` package must not be installed"
