#!/usr/bin/env python3
"""Write the gateway's OpenAPI document to openapi.json (the contract both SDKs are built from).

    .venv/bin/python scripts/export_openapi.py            # writes openapi.json at the repository root
    .venv/bin/python scripts/export_openapi.py --check    # exits 1 when the committed file differs
    .venv/bin/python scripts/export_openapi.py -o -       # prints it

The document comes from ``create_app(settings).openapi()`` with default settings and a dummy token,
whatever ``I2V_*`` variables the shell has, so the export is the same on every machine.
tests/client/test_openapi.py fails when the committed file is not what this writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from i2v_tools import REPO_ROOT

DEFAULT_OUTPUT = REPO_ROOT / "openapi.json"
DUMMY_TOKEN = "openapi-export-token-0123456789"


def export() -> str:
    """The OpenAPI document as committed: pretty, sorted keys, a trailing newline."""
    from gateway.app import create_app
    from gateway.config import Settings

    for name in [name for name in os.environ if name.startswith("I2V_")]:
        del os.environ[name]  # the document must not depend on the shell's settings
    with tempfile.TemporaryDirectory() as scratch:  # nothing is written, but never into the checkout
        settings = Settings(api_token=DUMMY_TOKEN, outputs_dir=Path(scratch, "outputs"),
                            jobs_db=Path(scratch, "jobs.sqlite3"), cache_dir=Path(scratch, "cache"))
        document = create_app(settings).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), help="file to write, or - for stdout")
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args()
    text = export()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} differs from the gateway's OpenAPI: run scripts/export_openapi.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
