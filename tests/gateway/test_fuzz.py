"""Schema-driven fuzzing of the whole API (schemathesis against /openapi.json), bounded in
examples and time: no 500, no hang, and every answer matches what the schema documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
CHECKS = ",".join(("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_schema_conformance", "response_headers_conformance"))


def test_fuzzing_the_openapi_schema_finds_no_server_error(start_gateway) -> None:
    # No job workers (accepted jobs need not run) and a short model deadline, so no case can hang.
    gateway = start_gateway({"I2V_JOB_WORKERS": "0", "I2V_RATE_LIMIT_PER_MINUTE": "0",
                             "I2V_INFERENCE_TIMEOUT_S": "20"})
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(st), "run", f"{gateway.url}/openapi.json", "-H", f"Authorization: Bearer {gateway.token}",
         "--max-examples", "40", "--request-timeout", "30", "--checks", CHECKS, "--seed", "20261124"],
        capture_output=True, text=True, timeout=600)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Test cases:" in result.stdout and "generated" in result.stdout, report
    assert "Traceback" not in gateway.log_path.read_text(), gateway.log_tail(80)
