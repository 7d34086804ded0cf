"""Developer tools shared by the scripts, the benchmarks and the tests: server launchers, the tiny model.

A developer package: it works from a checkout, installed editable (``scripts/setup.sh`` runs
``pip install -e .``), because it starts the repository's own launchers and writes under
``models/``. It is not meant for a wheel installed elsewhere.
"""

from pathlib import Path

# scripts/i2v_tools/__init__.py -> the checkout; an editable install keeps the file there.
REPO_ROOT = Path(__file__).resolve().parents[2]
