"""The README's code runs as written against the real servers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.servers import REPO_ROOT, TritonServer

pytestmark = pytest.mark.integration
README = (REPO_ROOT / "README.md").read_text()


def readme_block(name: str) -> str:
    match = re.search(rf"<!-- readme-test: {name} -->\n```(?:python|bash)\n(.*?)```", README, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return match.group(1)


def run_python(code: str) -> str:
    # stdin, from the repository root: as a user pasting into `python` there.
    result = subprocess.run([sys.executable, "-"], input=code, text=True, capture_output=True, cwd=REPO_ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_triton_http_example(triton: TritonServer) -> None:
    code = readme_block("triton-http").replace("localhost:8010", triton.http_url)
    assert "(8, 256, 320, 3) seed 42" in run_python(code)


def test_triton_grpc_example(triton: TritonServer) -> None:
    code = readme_block("triton-grpc").replace("localhost:8011", triton.grpc_url)
    assert "(8, 256, 256, 3)" in run_python(code)
