"""The layout is the architecture: imports run one way, down the layers, and every package installs.

Imports are read with ``ast`` (nothing is imported), so a back-edge fails here even when no
test happens to run the code that has it.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, where pytest brings tomli, the library tomllib came from
    import tomli as tomllib

from i2v_tools import REPO_ROOT

# (folder, what nothing in it may import, why). Read top to bottom, it is the architecture:
# HTTP edge -> jobs -> generation -> Triton, and the model, the tools and the tests apart.
NO_IMPORTS = [
    ("gateway/generation", ("gateway.jobs", "gateway.api", "gateway.edge"),
     "generation is the lowest gateway layer: a need from above comes as an interface it owns"),
    ("gateway/jobs", ("gateway.api", "gateway.edge"), "jobs know nothing of HTTP"),
    ("gateway/edge", ("gateway.api",), "the edge (auth, limits, signing) is used by the routes, not the reverse"),
    ("gateway/ui", ("gateway.api",),
     "the web UI sits at the top beside the routes: it uses the edge, jobs and generation, never the routes"),
    ("gateway/api", ("gateway.ui",), "the routes and the web UI are siblings; only gateway/app.py mounts the UI"),
    ("gateway/openai", ("gateway.ui",),
     "the OpenAI-compatible API (issue 21) is an adapter beside the routes: it reuses their dependencies "
     "and the job service, never the UI"),
    ("gateway/api", ("gateway.openai",), "the native routes and the /v1 adapter are siblings; gateway/app.py "
     "mounts both"),
    *[(layer, ("gateway.openai",), "nothing below the /v1 adapter imports it")
      for layer in ("gateway/edge", "gateway/jobs", "gateway/generation", "gateway/ui")],
    ("gateway/edge", ("gateway.ui",), "nothing below the UI imports it"),
    ("gateway/jobs", ("gateway.ui",), "nothing below the UI imports it"),
    ("gateway/generation", ("gateway.ui",), "nothing below the UI imports it"),
    ("gateway/tenants", ("gateway.api", "gateway.edge", "gateway.ui"),
     "keys, usage and quotas sit beside the jobs: the edge resolves callers through them, never the reverse"),
    ("model_repository", ("gateway", "i2v_tools", "tests"),
     "the model runs inside Triton, on another host than the gateway, with none of the developer tools"),
    (".", ("tests",), "the gateway, the model, the scripts and the client never import the test suite"),
]
# Where the "." rule does not look: the test suite may import itself.
TESTS = "tests"


def python_files(folder: str) -> list[Path]:
    """The .py files under ``folder`` that git tracks or would track (so not .venv/ or models/)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", folder],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted(REPO_ROOT / name for name in listed if name.endswith(".py") and (REPO_ROOT / name).exists())


def imports(path: Path, root: Path = REPO_ROOT) -> Iterator[tuple[int, str, list[str]]]:
    """(line, statement, modules) for each import in ``path``. ``from a import b`` names ``a`` and
    ``a.b`` (``b`` may be a module); relative imports are resolved against the file's package."""
    package = path.relative_to(root).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield node.lineno, ast.unparse(node), [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(package[:len(package) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, ast.unparse(node), [base] + [f"{base}.{alias.name}" for alias in node.names]


def is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("folder", "forbidden", "why"), NO_IMPORTS, ids=[rule[0] for rule in NO_IMPORTS])
def test_imports_run_one_way(folder: str, forbidden: tuple[str, ...], why: str) -> None:
    files = [path for path in python_files(folder)
             if folder != "." or path.relative_to(REPO_ROOT).parts[0] != TESTS]
    offences = [f"{path.relative_to(REPO_ROOT)}:{line}: {statement}"
                for path in files for line, statement, modules in imports(path)
                if any(is_within(module, prefix) for module in modules for prefix in forbidden)]
    where = "code outside tests/" if folder == "." else f"{folder}/"
    assert not offences, f"{where} must not import {', '.join(forbidden)}: {why}\n" + "\n".join(offences)


def unit_of(module: str, top: str) -> str | None:
    """The unit ``module`` belongs to: ``top.sub`` for anything in the subpackage ``top/sub/``, or the
    module ``top.name`` itself; None outside ``top`` and for ``top`` itself (its __init__ is empty,
    and ``from gateway import metrics`` names it beside the module it means)."""
    parts = module.split(".")
    return f"{top}.{parts[1]}" if parts[0] == top and len(parts) > 1 else None


def package_graph(files: list[Path], root: Path, top: str = "gateway") -> dict[str, set[str]]:
    """Which unit of ``top`` imports which, each subpackage taken as one unit."""
    graph: dict[str, set[str]] = {}
    for path in files:
        source = unit_of(".".join(path.relative_to(root).with_suffix("").parts), top)
        if source is None:
            continue
        targets = {unit_of(module, top) for _, _, modules in imports(path, root) for module in modules}
        graph.setdefault(source, set()).update(target for target in targets if target not in (None, source))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            if cycle := walk(target, [*path, node]):
                return cycle
        done.add(node)
        return None

    return next(filter(None, (walk(node, []) for node in sorted(graph))), None)


def test_gateway_packages_import_without_a_cycle() -> None:
    """The rules above name the layers' forbidden imports; this takes each subpackage of gateway/
    (and each module beside them) as one unit, so a back-edge the rules do not name still fails:
    config.py reaching up into edge/ or generation/ is where a knot starts (STYLE.md lesson 19)."""
    cycle = find_cycle(package_graph(python_files("gateway"), REPO_ROOT))
    assert cycle is None, "gateway's packages import in a cycle: " + " -> ".join(cycle or [])


def test_the_package_check_fails_on_a_planted_upward_import(tmp_path: Path) -> None:
    """The check above on a copy of gateway/ with one line added: the settings importing the edge."""
    for path in python_files("gateway"):
        copy = tmp_path / path.relative_to(REPO_ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    copies = sorted(tmp_path.rglob("*.py"))
    assert find_cycle(package_graph(copies, tmp_path)) is None  # the copy alone is as clean as the original
    config = tmp_path / "gateway" / "config.py"
    config.write_text(config.read_text() + "\nfrom gateway.edge.client_ip import parse_networks\n")
    cycle = find_cycle(package_graph(copies, tmp_path))
    assert cycle is not None and "gateway.config" in cycle and "gateway.edge" in cycle, cycle


def test_every_gateway_package_is_installed() -> None:
    """A package folder missing from pyproject.toml imports from a checkout but not once installed."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {".".join(init.parent.relative_to(REPO_ROOT).parts) for init in python_files("gateway")
               if init.name == "__init__.py"}
    missing = sorted(folders - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    # And each listed package is a folder with an __init__.py, where package-dir says (or by its name).
    places = setuptools.get("package-dir", {})
    for package in listed:
        top, *rest = package.split(".")
        folder = REPO_ROOT / places.get(top, top) / Path(*rest)
        assert (folder / "__init__.py").is_file(), f"pyproject.toml lists {package}, but {folder} is no package"
