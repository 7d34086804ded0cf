"""The README's code blocks, found by their ``<!-- readme-test: NAME -->`` markers."""

from __future__ import annotations

import re

from i2v_tools import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def readme_block(name: str) -> str:
    """The text of the fenced block right after ``<!-- readme-test: NAME -->``, as written."""
    match = re.search(rf"<!-- readme-test: {name} -->\n```(?:python|bash|js)\n(.*?)```", README, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return match.group(1)
