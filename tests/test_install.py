"""The project installs like a library: after ``pip install -e .`` (and ``-e client``) its packages
import from any folder, with no sys.path edits and without the checkout as the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, where pytest brings tomli, the library tomllib came from
    import tomli as tomllib

from i2v_tools import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
# Which pins each constraints file holds: the roles' extras (the project's own name refers to its other extras).
PINS_OF = {"gateway.txt": ("gateway", "ui"), "model.txt": ("model",), "dev.txt": ("dev",)}
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
    # --no-deps: this checks the packaging alone (the roles' tests below bring the dependencies).
    run(python, ["-m", "pip", "install", "--quiet", "--no-deps", "-e", str(REPO_ROOT), "-e",
                 str(REPO_ROOT / "client")], cwd=tmp_path, timeout=300)
    assert_in_checkout(json.loads(run(python, ["-c", FIND_SPECS, *PACKAGES], cwd=tmp_path)))


def test_the_project_venv_imports_the_packages_from_any_folder(tmp_path: Path) -> None:
    """Real imports, dependencies and all, in the environment the servers and scripts run in."""
    code = ("import json, gateway.app, i2v_model, i2v_tools.servers, i2v_client\n"
            "print(json.dumps({m.__name__: m.__file__ for m in (gateway.app, i2v_model, i2v_tools.servers,"
            " i2v_client)}))")
    assert_in_checkout(json.loads(run(sys.executable, ["-c", code], cwd=tmp_path)))


def names(requirements: list[str]) -> set[str]:
    return {Requirement(line).name.lower() for line in requirements} - {PYPROJECT["project"]["name"]}


def test_each_extra_has_its_pins_and_each_pin_its_extra() -> None:
    """pyproject.toml names what each role needs, requirements/*.txt the versions: a package added to
    one and not the other would install unpinned, or be pinned and never installed."""
    for constraints, extras in PINS_OF.items():
        lines = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements" / constraints).read_text()
                 .splitlines()]
        pinned = [line for line in lines if line]
        assert not [line for line in pinned if "[" in line], f"{constraints}: constraints take no extras"
        declared = set().union(*(names(EXTRAS[extra]) for extra in extras))
        assert names(pinned) == declared, f"requirements/{constraints} against the extras {extras}"


def fresh_venv(where: Path) -> Path:
    venv.create(where, with_pip=True, system_site_packages=False)  # only what pip puts there
    assert "include-system-site-packages = false" in (where / "pyvenv.cfg").read_text()
    return where / "bin" / "python"


def pip_install_role(python: Path, extra: str, constraints: str, *more: str) -> None:
    """What pyproject.toml's comment says a user runs for a role, from a folder outside the checkout."""
    run(python, ["-m", "pip", "install", "--quiet", "-c", str(REPO_ROOT / "requirements" / constraints),
                 "-e", f"{REPO_ROOT}[{extra}]", *more], cwd=python.parent.parent.parent, timeout=600)


@pytest.mark.integration
def test_the_gateway_role_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    """pip install -e ".[gateway]" with its constraints, and nothing else (about 20 s)."""
    python = fresh_venv(tmp_path / "venv")
    pip_install_role(python, "gateway", "gateway.txt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    usage = run(python, ["-m", "gateway", "--help"], cwd=elsewhere)
    assert usage.startswith("usage: python -m gateway") and "I2V_API_TOKEN" in usage, usage
    code = ("import importlib.util, json, gateway.app\n"
            "print(json.dumps({'gateway.app': gateway.app.__file__,"
            " 'absent': [m for m in ('gradio', 'torch') if importlib.util.find_spec(m)]}))")
    found = json.loads(run(python, ["-c", code], cwd=elsewhere))
    assert_in_checkout({"gateway.app": found["gateway.app"]})
    assert found["absent"] == [], "the gateway role installs neither the web UI's Gradio nor the model's torch"
    # Without the `ui` extra the web UI (on by default) cannot start: one line says so, before any port opens.
    env = {**os.environ, "I2V_INSECURE_NO_AUTH": "true", "I2V_API_PORT": "1"}
    refused = subprocess.run([str(python), "-m", "gateway"], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "pip install -e '.[ui]'" in refused.stderr, refused.stderr


def link_installed_torch(site_packages: Path) -> None:
    """Puts the files that torch's wheel installed into the project's venv (scripts/setup.sh's
    torch==2.13.0, the CPU build) into another venv, hard-linked: pip then finds torch installed, as
    it does after setup.sh's own torch-first step, and installs everything else. Unpacking the wheel
    again would cost 30-45 s more on this machine for the same files."""
    torch = distribution("torch")
    source = Path(str(torch.locate_file("")))
    for name in torch.files or []:
        if name.parts[0] == "..":  # console scripts (torchrun), with this venv's python in their first line
            continue
        target = site_packages / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / name, target)
        except OSError:  # another filesystem
            target.write_bytes((source / name).read_bytes())


@pytest.mark.integration
def test_the_model_role_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    """pip install -e ".[model]" torch==2.13.0 with its constraints (about 35 s with torch linked)."""
    python = fresh_venv(tmp_path / "venv")
    site_packages = Path(run(python, ["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             cwd=tmp_path).strip())
    link_installed_torch(site_packages)
    pip_install_role(python, "model", "model.txt", "torch==2.13.0")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # i2v_model imports torch and diffusers only when a pipeline loads: import them too, and what they need.
    code = ("import importlib.util, json, i2v_model, torch, diffusers, transformers, accelerate, safetensors\n"
            "from diffusers import I2VGenXLPipeline\n"
            "print(json.dumps({'i2v_model': i2v_model.__file__, 'torch': torch.__version__,"
            " 'torch_file': torch.__file__, 'gateway': importlib.util.find_spec('fastapi') is None}))")
    found = json.loads(run(python, ["-c", code], cwd=elsewhere, timeout=300))
    assert_in_checkout({"i2v_model": found["i2v_model"]})
    assert found["torch"] == "2.13.0+cpu" and Path(found["torch_file"]).is_relative_to(site_packages), found
    assert found["gateway"], "the model role installs none of the gateway's packages (fastapi)"
