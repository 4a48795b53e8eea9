"""Cold start: a fresh interpreter importing each handler (layer on the path) against boto3 + Powertools.

Measured as Lambda loads the code: the layer as layers/governance/Makefile builds it for `sam build` (for
this machine's architecture), the function's code copied as `sam build` copies it, both on PYTHONPATH as
Lambda puts /opt/python and /var/task there, and no bytecode written while importing (both are read-only
on Lambda). A module that ships no .pyc is compiled at every cold start, here as there."""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govern.template import Resolver, load_template

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = ROOT / "layers" / "governance"
BASELINE_CODE = "import boto3; from aws_lambda_powertools import Logger"
# The handlers import with the collector paused and then frozen (governance/startup.py); the figure of
# record compares them with BASELINE_CODE, and this one is measured beside it so the pause's share shows.
PAUSED_BASELINE_CODE = f"import gc; gc.disable(); {BASELINE_CODE}; gc.freeze(); gc.enable()"
DUMMY_ACCOUNT = "111111111111"
REGION = "us-east-1"


class _DummyAttributes(dict[str, str]):
    """Any attribute of a template resource, as a plausible placeholder (nothing is deployed)."""

    def __init__(self, logical_id: str) -> None:
        super().__init__()
        self.logical_id = logical_id

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        if key == "Arn":
            return f"arn:aws:dummy:{REGION}:{DUMMY_ACCOUNT}:{self.logical_id}"
        return f"bench-{self.logical_id}"


@dataclass(frozen=True)
class FunctionUnderTest:
    logical_id: str
    code_dir: Path
    module: str
    memory_mb: int
    environment: dict[str, str]


def functions_of_template(template_path: Path = ROOT / "template.yaml") -> list[FunctionUnderTest]:
    """Every AWS::Serverless::Function with its environment (Globals merged) resolved with dummy values."""
    template = load_template(template_path)
    parameters = {
        name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()
    }
    resolver = Resolver(
        parameters=parameters,
        pseudo={
            "AWS::AccountId": DUMMY_ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": "bench",
            "AWS::URLSuffix": "amazonaws.com",
        },
        conditions=template.get("Conditions") or {},
        resources={logical_id: _DummyAttributes(logical_id) for logical_id in template["Resources"]},
    )
    defaults: dict[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        environment = dict(resolver.resolve(defaults.get("Environment", {})).get("Variables", {}))
        environment.update(resolver.resolve(properties.get("Environment", {})).get("Variables", {}))
        handler = str(properties.get("Handler", defaults.get("Handler", "app.lambda_handler")))
        found.append(
            FunctionUnderTest(
                logical_id=logical_id,
                code_dir=ROOT / str(properties["CodeUri"]),
                module=handler.rpartition(".")[0],
                memory_mb=int(properties.get("MemorySize", defaults.get("MemorySize", 128))),
                environment={key: str(value) for key, value in environment.items()},
            )
        )
    return found


@dataclass(frozen=True)
class Deployed:
    """Where the measured code lives, as `sam build` lays it out: the layer's python/ directory and one
    task root per function."""

    layer: Path
    task_roots: dict[str, Path]


def absolute_interpreter(interpreter: str) -> str:
    """`interpreter` as an absolute path (a name is looked up on PATH): the bench runs it from the layer's
    directory and from each task root, where a relative path would not resolve."""
    return str(Path(shutil.which(interpreter) or interpreter).absolute())


def build_layer(interpreter: str, into: Path, *, bytecode: bool = True) -> Path:
    """The shared layer, built by the same Makefile `sam build` runs, with wheels for this machine (so
    `interpreter` can load them); returns its python/ directory. `bytecode=False` removes the .pyc files
    afterwards: the layer as SAM's python3.13 build method shipped it, for comparison."""
    variables = {
        "ARTIFACTS_DIR": str(into),
        "PYTHON": absolute_interpreter(interpreter),
        "PLATFORM": f"manylinux2014_{platform.machine()}",
    }
    completed = subprocess.run(
        ["make", "--silent", "-C", str(LAYER_DIR), "build-GovernanceLayer"]
        + [f"{name}={value}" for name, value in variables.items()],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        said = [line for line in completed.stderr.strip().splitlines() if not line.startswith("make")]
        reason = (said or ["no output"])[-1].removeprefix("error: ")
        raise RuntimeError(f"building the layer for the cold start failed: {reason}")
    python = into / "python"
    if not bytecode:
        for cache in list(python.rglob("__pycache__")):
            shutil.rmtree(cache)
    return python


def deploy(
    functions: list[FunctionUnderTest], interpreter: str, into: Path, *, bytecode: bool = True
) -> Deployed:
    """The layer, and each function's code copied without the dev tree's bytecode, as `sam build` does."""
    task_roots = {}
    for function in functions:
        task_root = into / "task" / function.logical_id
        shutil.copytree(function.code_dir, task_root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        task_roots[function.logical_id] = task_root
    return Deployed(layer=build_layer(interpreter, into / "layer", bytecode=bytecode), task_roots=task_roots)


# Run by the interpreter that loads the layer: the magic number and the source hash in a .pyc are its own.
_BYTECODE_CHECK = """
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
unchecked_hash = 0b01  # PEP 552: hash-based, and the source is not checked at import
sources = sorted(root.rglob("*.py"))
problems = {}
for source in sources:
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    name = str(source.relative_to(root))
    if not cached.exists():
        problems[name] = "no .pyc"
        continue
    header = cached.read_bytes()[:16]
    if header[:4] != importlib.util.MAGIC_NUMBER:
        problems[name] = "bytecode of another Python"
    elif int.from_bytes(header[4:8], "little") != unchecked_hash:
        problems[name] = "not an unchecked-hash .pyc"
    elif header[8:16] != importlib.util.source_hash(source.read_bytes()):
        problems[name] = "compiled from another source"
print(json.dumps({"modules": len(sources), "problems": problems}))
"""


def bytecode_problems(python_dir: Path, interpreter: str) -> tuple[int, dict[str, str]]:
    """How many modules `python_dir` holds, and each one `interpreter` would compile at import rather than
    load from its .pyc, with why. Lambda cannot write .pyc files to /opt, so it would do that at every
    cold start."""
    completed = subprocess.run(
        [interpreter, "-c", _BYTECODE_CHECK, str(python_dir)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"checking the bytecode of {python_dir} with {interpreter} failed: {last}")
    checked = json.loads(completed.stdout)
    return int(checked["modules"]), dict(checked["problems"])


def lambda_like_environment(function: FunctionUnderTest, deployed: Deployed) -> dict[str, str]:
    """What a Lambda execution environment sets, plus the function's own variables: the same for the
    function and for the baseline it is compared with. The `deployed` task root and layer are on
    PYTHONPATH, in Lambda's order, and nothing writes bytecode (both are read-only on Lambda)."""
    task_root = deployed.task_roots[function.logical_id]
    keep = {
        key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    }
    return {
        **keep,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_LAMBDA_FUNCTION_NAME": f"bench-{function.logical_id}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": f"{function.module}.lambda_handler",
        "PYTHONPATH": f"{task_root}{os.pathsep}{deployed.layer}",
        "PYTHONDONTWRITEBYTECODE": "1",
        **function.environment,
    }


def _import_code(function: FunctionUnderTest) -> str:
    return f"import {function.module}"


def _time_fresh_interpreter(code: str, environment: dict[str, str], cwd: Path, interpreter: str) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        [interpreter, "-c", code], env=environment, cwd=cwd, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"`{code}` failed: {completed.stderr.strip().splitlines()[-1:]}")
    return elapsed


@dataclass
class ColdStart:
    function: str
    median_s: float
    baseline_median_s: float
    paused_baseline_median_s: float
    rounds: int

    @property
    def ratio(self) -> float:
        return self.median_s / self.baseline_median_s

    @property
    def ratio_to_paused_baseline(self) -> float:
        """Against a baseline that pauses the collector as the handlers do (governance/startup.py): what
        the handler's own imports cost, with the pause's saving taken out of the comparison."""
        return self.median_s / self.paused_baseline_median_s


_DESCRIBE = """
import importlib.metadata as m, importlib.util as u, json, sys
names = ("boto3", "botocore", "aws-lambda-powertools", "pydantic", "pydantic-core")
print(json.dumps({"python": sys.version.split()[0], "awscrt": u.find_spec("awscrt") is not None,
                  **{n: m.version(n) for n in names}}))
"""


def describe_interpreter(interpreter: str, layer: Path) -> dict[str, Any]:
    """The interpreter's Python version and the versions of what the handlers import (from `layer` first,
    as Lambda finds them), for the record."""
    environment = {**os.environ, "PYTHONPATH": str(layer)}
    try:
        completed = subprocess.run(
            [interpreter, "-c", _DESCRIBE], env=environment, capture_output=True, text=True, check=False
        )
    except OSError as error:
        raise RuntimeError(f"cold-start interpreter {interpreter} cannot be run: {error.strerror}") from None
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cold-start interpreter {interpreter} cannot import the layer's packages: {last}")
    described: dict[str, Any] = json.loads(completed.stdout)
    return {"interpreter": interpreter, **described}


def measure(
    deployed: Deployed, rounds: int = 15, seed: int = 6, interpreter: str = sys.executable
) -> list[ColdStart]:
    """Per function: `rounds` triples (baseline, paused baseline, handler) run alternately, in a shuffled
    order per triple, each in a fresh `interpreter` with the `deployed` code; returns the medians and
    their ratios."""
    functions = functions_of_template()
    order = random.Random(seed)
    samples: dict[str, dict[str, list[float]]] = {
        f.logical_id: {kind: [] for kind in ("handler", "baseline", "paused_baseline")} for f in functions
    }
    environments = {f.logical_id: lambda_like_environment(f, deployed) for f in functions}
    # One unmeasured run of each first, so every measured run finds the files in the page cache.
    for function in functions:
        environment, task_root = environments[function.logical_id], deployed.task_roots[function.logical_id]
        _time_fresh_interpreter(BASELINE_CODE, environment, task_root, interpreter)
        _time_fresh_interpreter(_import_code(function), environment, task_root, interpreter)
    for _ in range(rounds):
        for function in order.sample(functions, len(functions)):
            environment, task_root = (
                environments[function.logical_id],
                deployed.task_roots[function.logical_id],
            )
            runs = [
                ("baseline", BASELINE_CODE),
                ("paused_baseline", PAUSED_BASELINE_CODE),
                ("handler", _import_code(function)),
            ]
            for kind, code in order.sample(runs, len(runs)):
                elapsed = _time_fresh_interpreter(code, environment, task_root, interpreter)
                samples[function.logical_id][kind].append(elapsed)
    return [
        ColdStart(
            function=logical_id,
            median_s=statistics.median(runs_of["handler"]),
            baseline_median_s=statistics.median(runs_of["baseline"]),
            paused_baseline_median_s=statistics.median(runs_of["paused_baseline"]),
            rounds=rounds,
        )
        for logical_id, runs_of in samples.items()
    ]
