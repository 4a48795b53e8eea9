"""Every handler imports as Lambda loads it: layer packages only, no X-Ray SDK, nothing read at import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from govern.emulator import PROJECT_ROOT

FUNCTIONS = sorted(path.parent for path in (PROJECT_ROOT / "functions").glob("*/app.py"))

# The layer ships no aws-xray-sdk (it would bring a botocore that shadows the runtime's): a handler
# that builds Powertools' Tracer would fail at import in Lambda. Blocking the module proves none does.
PROBE = """
import sys
for name in ("aws_xray_sdk", "aws_xray_sdk.core"):
    sys.modules[name] = None
sys.path.insert(0, sys.argv[1])
import app
assert callable(app.lambda_handler)
"""


@pytest.mark.parametrize("function_dir", FUNCTIONS, ids=[path.name for path in FUNCTIONS])
def test_the_handler_imports_without_xray_sdk_or_settings(function_dir: os.PathLike[str]) -> None:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "LEDGER_", "GOVERNANCE_", "IDEMPOTENCY_", "STATE_"))
    }
    environment.update(
        {"AWS_LAMBDA_FUNCTION_NAME": "probe", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, str(function_dir)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
