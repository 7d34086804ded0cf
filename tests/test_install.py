"""The project installs like a library: after ``pip install -e .`` (and ``-e client``) its packages
import from any folder, with no sys.path edits and without the checkout as the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, where pytest brings tomli, the library tomllib came from
    import tomli as tomllib

from i2v_tools import REPO_ROOT

SETUPTOOLS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES = [*SETUPTOOLS["packages"], "i2v_client"]

# Where each package is found, printed as JSON by the interpreter under test. find_spec loads no
# package code (a parent's __init__ would pull in fastapi or torch, which a clean venv lacks):
# subpackages are looked up in their parent's folders.
FIND_SPECS = """
import importlib.machinery, importlib.util, json, sys

def spec(name):
    parent, _, leaf = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name)
    outer = spec(parent)
    return outer and importlib.machinery.PathFinder.find_spec(leaf, outer.submodule_search_locations)

print(json.dumps({name: getattr(spec(name), "origin", None) for name in sys.argv[1:]}))
"""


def run(python: Path | str, args: list[str], cwd: Path, timeout: float = 120) -> str:
    # No PYTHONPATH, and a working directory outside the checkout: only the install can help.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_in_checkout(origins: dict[str, str | None]) -> None:
    outside = {name: origin for name, origin in origins.items()
               if origin is None or not Path(origin).resolve().is_relative_to(REPO_ROOT)}
    assert not outside, f"not found, or found outside {REPO_ROOT}: {outside}"


@pytest.mark.integration
def test_a_clean_venv_finds_every_package_after_pip_install_e(tmp_path: Path) -> None:
    """What scripts/setup.sh does, in a fresh venv with nothing else installed (about 15 s)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # no system site packages: only what pip puts there
    python = env_dir / "bin" / "python"
    # --no-deps: the dependencies come from requirements/*.txt; this checks the packaging alone.
    run(python, ["-m", "pip", "install", "--quiet", "--no-deps", "-e", str(REPO_ROOT), "-e",
                 str(REPO_ROOT / "client")], cwd=tmp_path, timeout=300)
    assert_in_checkout(json.loads(run(python, ["-c", FIND_SPECS, *PACKAGES], cwd=tmp_path)))


def test_the_project_venv_imports_the_packages_from_any_folder(tmp_path: Path) -> None:
    """Real imports, dependencies and all, in the environment the servers and scripts run in."""
    code = ("import json, gateway.app, i2v_model, i2v_tools.servers, i2v_client\n"
            "print(json.dumps({m.__name__: m.__file__ for m in (gateway.app, i2v_model, i2v_tools.servers,"
            " i2v_client)}))")
    assert_in_checkout(json.loads(run(sys.executable, ["-c", code], cwd=tmp_path)))
