"""Every handler imports as Lambda loads it: python3.13, the runtime's SDK, the layer as `sam build` builds
it and the function's code, nothing written (Lambda's /opt and /var/task are read-only), no X-Ray SDK,
nothing read at import, and the collector running again afterwards with the start-up heap frozen
(governance/startup.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cold_start import Deployed, deploy, functions_of_template
from govern.emulator import PROJECT_ROOT
from tests.conftest import files_under

FUNCTIONS = sorted(path.parent for path in (PROJECT_ROOT / "functions").glob("*/app.py"))
# The SDK a python3.13 runtime ships (boto3, botocore; no awscrt), as `make bench` installs it.
RUNTIME_SDK = PROJECT_ROOT / "bench" / "lambda-runtime.txt"


@dataclass(frozen=True)
class LambdaLike:
    runtime: Path
    deployed: Deployed
    task_roots: dict[str, Path]  # by function folder name

    def environment(self, function_dir: Path) -> dict[str, str]:
        """Lambda's path order (runtime, task root, layer), no bytecode written, and none of the
        functions' settings: importing a handler must not need them."""
        path = [self.runtime, self.task_roots[function_dir.name], self.deployed.layer]
        return {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_FUNCTION_NAME": "probe",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": os.pathsep.join(str(entry) for entry in path),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def files(self) -> set[Path]:
        return files_under(self.deployed.layer, *self.task_roots.values())


@pytest.fixture(scope="module")
def lambda_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaLike]:
    if not shutil.which("python3.13"):
        pytest.fail("the handlers run on python3.13: run the suite through `make test`, which provides it")
    root = tmp_path_factory.mktemp("lambda-like")
    functions = functions_of_template()
    deployed = deploy(functions, "python3.13", root)
    runtime = root / "runtime"
    subprocess.run(
        ["python3.13", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
         str(runtime), "-r", str(RUNTIME_SDK)],
        capture_output=True,
        check=True,
        timeout=600,
    )  # fmt: skip
    by_folder = {f.code_dir.name: deployed.task_roots[f.logical_id] for f in functions}
    yield LambdaLike(runtime=runtime, deployed=deployed, task_roots=by_folder)


def _run_probe(lambda_like: LambdaLike, probe: str, function_dir: Path) -> None:
    before = lambda_like.files()
    completed = subprocess.run(
        ["python3.13", "-c", probe],
        env=lambda_like.environment(function_dir),
        cwd=lambda_like.task_roots[function_dir.name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert lambda_like.files() == before, "importing the handler wrote into the layer or the task root"


# The layer ships no aws-xray-sdk (it would bring a botocore that shadows the runtime's): a handler
# that builds Powertools' Tracer would fail at import in Lambda. Blocking the module proves none does.
PROBE = """
import sys
for name in ("aws_xray_sdk", "aws_xray_sdk.core"):
    sys.modules[name] = None
import gc
import app
assert sys.version_info[:2] == (3, 13), sys.version
assert callable(app.lambda_handler)
assert gc.isenabled(), "importing the handler left the garbage collector disabled"
# Tens of thousands of objects here: everything the imports created, including botocore's and Powertools'.
assert gc.get_freeze_count() > 50_000, f"the handler's init froze only {gc.get_freeze_count()} objects"
"""


@pytest.mark.parametrize("function_dir", FUNCTIONS, ids=[path.name for path in FUNCTIONS])
def test_the_handler_imports_without_xray_sdk_or_settings(
    lambda_like: LambdaLike, function_dir: Path
) -> None:
    _run_probe(lambda_like, PROBE, function_dir)


# Workflow functions whose steps mostly do not parse an event: only the parsing step loads the event models
# and pydantic (about a tenth of a second of every cold start here; `make bench` measures it).
WITHOUT_PYDANTIC_AT_IMPORT = (
    "baseline_account",
    "deploy_model",
    "promote_model",
    "record_failure",
    "watch_forwarding",
)
PYDANTIC_PROBE = """
import sys
import app
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "pydantic")
assert not loaded, f"importing the handler loaded {loaded[:3]}"
"""


@pytest.mark.parametrize("name", WITHOUT_PYDANTIC_AT_IMPORT)
def test_workflow_steps_that_parse_no_event_start_without_pydantic(
    lambda_like: LambdaLike, name: str
) -> None:
    _run_probe(lambda_like, PYDANTIC_PROBE, PROJECT_ROOT / "functions" / name)


# RemediateConfig parses every record, so it loads pydantic at import; but only the Config event models.
EVENT_MODELS_PROBE = """
import sys
import app
loaded = sorted(name for name in sys.modules if name.startswith("governance.events."))
assert loaded == ["governance.events.config"], f"importing the handler loaded the event models {loaded}"
"""


def test_remediate_config_loads_only_the_config_event_models(lambda_like: LambdaLike) -> None:
    _run_probe(lambda_like, EVENT_MODELS_PROBE, PROJECT_ROOT / "functions" / "remediate_config")
