"""scripts/i2v_tools/stub_watch.py alone: which shared-memory regions count as left by dead model
processes. (The watch itself is tested against a real tritonserver in
tests/durability/test_model_process_recovery.py.)"""

from __future__ import annotations

import mmap
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2v_tools import stub_watch


@pytest.fixture
def regions() -> Iterator[list[Path]]:
    """Region files of this test's own (the host's other regions are never touched)."""
    made: list[Path] = []
    yield made
    for path in made:
        path.unlink(missing_ok=True)


def region(made: list[Path], age_s: float) -> Path:
    path = stub_watch.SHM / f"{stub_watch.SHM_PREFIX}test-{uuid.uuid4()}"
    path.write_bytes(b"\0" * 4096)
    then = time.time() - age_s
    os.utime(path, (then, then))
    made.append(path)
    return path


def test_only_old_unmapped_regions_are_stale(regions: list[Path]) -> None:
    old, young, mapped = region(regions, 600), region(regions, 0), region(regions, 600)
    with mapped.open("r+b") as file, mmap.mmap(file.fileno(), 4096):
        stale = set(stub_watch.stale_regions()) & set(regions)
        assert stale == {old}
        assert stub_watch.clean_shm(stale) == [old]
    assert not old.exists() and young.exists() and mapped.exists()
    # At a container's start nothing else runs: every unmapped region goes, however young.
    assert set(stub_watch.stale_regions(min_age_s=0)) & set(regions) == {young, mapped}


def test_an_instance_name_gives_its_model() -> None:
    assert stub_watch.Stub(1, 1, "S", "i2vgen_xl_0_0").model == "i2vgen_xl"
    assert stub_watch.Stub(1, 1, "S", "i2vgen_xl_progress_0_1").model == "i2vgen_xl_progress"
    assert stub_watch.Stub(1, 1, "Z", "").dead
