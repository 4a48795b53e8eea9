"""`make deploy` deploys where the operator says: the governance Region and the parameters on the command
line reach `sam deploy`, and without them samconfig.toml's section decides (docs/rollout.md, step 1)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def sam_deploy_command(*variables: str) -> str:
    """The `sam deploy` line `make deploy` would run (make -n runs nothing)."""
    completed = subprocess.run(
        ["make", "--no-print-directory", "-n", "deploy", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    (line,) = [line for line in completed.stdout.splitlines() if "sam deploy" in line]
    return " ".join(line.split())


def test_the_region_and_the_parameters_reach_sam_deploy() -> None:
    overrides = "--parameter-overrides Stage=prod BaselineRegions=eu-west-1"
    command = sam_deploy_command("ENV=prod", "REGION=eu-west-1", f"DEPLOY_ARGS={overrides}")
    assert command.endswith(f"sam deploy --config-env prod --region eu-west-1 {overrides}")


def test_without_them_samconfig_decides() -> None:
    assert sam_deploy_command("ENV=prod").endswith("sam deploy --config-env prod")
    assert sam_deploy_command().endswith("sam deploy --config-env dev")
