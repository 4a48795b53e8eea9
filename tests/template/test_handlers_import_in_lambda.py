"""Every handler imports as Lambda loads it: layer packages only, no X-Ray SDK, nothing read at import, and
the collector running again afterwards with the start-up heap frozen (governance/startup.py)."""

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
import gc
import app
assert callable(app.lambda_handler)
assert gc.isenabled(), "importing the handler left the garbage collector disabled"
# Tens of thousands of objects here: everything the imports created, including botocore's and Powertools'.
assert gc.get_freeze_count() > 50_000, f"the handler's init froze only {gc.get_freeze_count()} objects"
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


# Workflow functions whose steps mostly do not parse an event: only the parsing step loads the event models
# and pydantic (about a tenth of a second of every cold start here; `make bench` measures it).
WITHOUT_PYDANTIC_AT_IMPORT = ("baseline_account", "deploy_model", "promote_model", "record_failure")
PYDANTIC_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import app
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "pydantic")
assert not loaded, f"importing the handler loaded {loaded[:3]}"
"""


@pytest.mark.parametrize("name", WITHOUT_PYDANTIC_AT_IMPORT)
def test_workflow_steps_that_parse_no_event_start_without_pydantic(name: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PYDANTIC_PROBE, str(PROJECT_ROOT / "functions" / name)],
        env={**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "probe", "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
