"""Lay out a runnable Triton 2.51 from the ``nvidia-pytriton`` wheel, without installing it.

The wheel ships ``tritonserver``, the Python backend and one stub per Python version, but
it pins ``numpy<2`` and brings PyTriton's own API, neither of which the project wants in
its environment. So the wheel is downloaded with ``--no-deps`` and unpacked under
``.triton/``, and a backend folder is built with the stub of the Python that will run the
model.

    python scripts/triton_runtime.py install   # idempotent
    python scripts/triton_runtime.py env       # shell exports for the launcher
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = REPO_ROOT / ".triton"
WHEEL = "nvidia-pytriton==0.7.0"  # Triton 2.51.0 with the Python backend
DIST_DIR = RUNTIME_DIR / "dist"
BACKENDS_DIR = RUNTIME_DIR / "backends"
TRITON_DIR = DIST_DIR / "pytriton" / "tritonserver"


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def install() -> Path:
    """Download and unpack the wheel once, then lay out the backend for this Python."""
    if not (TRITON_DIR / "bin" / "tritonserver").exists():
        wheel_dir = RUNTIME_DIR / "wheel"
        wheel_dir.mkdir(parents=True, exist_ok=True)
        if not list(wheel_dir.glob("nvidia_pytriton-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheel_dir),
                            WHEEL], check=True)
        wheel = next(wheel_dir.glob("nvidia_pytriton-*.whl"))
        staging = RUNTIME_DIR / "dist.partial"
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(staging)
        for path in staging.rglob("*"):
            # zipfile drops the executable bit; the binaries and libraries need it.
            if path.is_file() and (path.suffix == ".so" or ".so." in path.name or path.parent.name in
                                   ("bin",) or path.name == "triton_python_backend_stub"):
                path.chmod(0o755)
        shutil.rmtree(DIST_DIR, ignore_errors=True)
        staging.rename(DIST_DIR)
        shutil.rmtree(wheel_dir)

    stub = TRITON_DIR / "python_backend_stubs" / python_version() / "triton_python_backend_stub"
    if not stub.exists():
        raise SystemExit(f"the Triton wheel has no Python backend stub for Python {python_version()} (3.8-3.13)")
    python_backend = BACKENDS_DIR / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for source in (TRITON_DIR / "backends" / "python" / "libtriton_python.so",
                   TRITON_DIR / "backends" / "python" / "triton_python_backend_utils.py", stub):
        target = python_backend / source.name
        if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
            shutil.copy2(source, target)
    return TRITON_DIR / "bin" / "tritonserver"


def environment() -> dict[str, str]:
    """Variables the launcher exports before starting tritonserver."""
    libdir = sysconfig.get_config_var("LIBDIR")
    # The stub links libpython3.X.so dynamically: the running interpreter's own library
    # must come first, or the system's libpython loads under another build's stdlib.
    library_path = [libdir, str(DIST_DIR / "nvidia_pytriton.libs")]
    return {
        "TRITONSERVER_BIN": str(TRITON_DIR / "bin" / "tritonserver"),
        "TRITON_BACKEND_DIR": str(BACKENDS_DIR),
        "TRITON_LD_LIBRARY_PATH": ":".join(library_path),
        "TRITON_PYTHON_BIN_DIR": str(Path(sys.executable).parent),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Triton runtime from the nvidia-pytriton wheel")
    parser.add_argument("command", choices=("install", "env"))
    args = parser.parse_args(argv)
    if args.command == "install":
        print(f"tritonserver ready at {install()}")
    else:
        for key, value in environment().items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
