"""`sam build` builds the stack offline; every native extension in the layer is for arm64 (aarch64), and every
module in it ships its python3.13 bytecode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cold_start import bytecode_problems
from govern.emulator import PROJECT_ROOT

ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183  # e_machine of the ELF header
EM_NAMES = {3: "x86", 62: "x86-64", 40: "arm", EM_AARCH64: "aarch64"}


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == ELF_MAGIC, f"{path} is not an ELF file"
    byteorder = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    sam = shutil.which("sam") or str(Path(sys.executable).with_name("sam"))
    if not shutil.which("python3.13"):
        pytest.fail(
            "sam build needs python3.13 on PATH: run the suite through `make test`, which provides it"
        )
    target = tmp_path_factory.mktemp("sam-build")
    completed = subprocess.run(
        [sam, "build", "--build-dir", str(target), "--template-file", str(PROJECT_ROOT / "template.yaml")],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    yield target


def test_every_function_and_the_layer_are_built(build_dir: Path) -> None:
    built = {path.name for path in build_dir.iterdir() if path.is_dir()}
    assert {
        "GovernanceLayer",
        "RecordFailureFunction",
        "RemediateConfigFunction",
        "PromoteModelFunction",
        "DeployModelFunction",
        "BaselineAccountFunction",
    } <= built
    for function in built - {"GovernanceLayer"}:
        assert (build_dir / function / "app.py").exists(), f"{function} has no app.py"


def test_the_layer_carries_the_shared_package_and_its_policy(build_dir: Path) -> None:
    python = build_dir / "GovernanceLayer" / "python"
    source = PROJECT_ROOT / "layers" / "governance" / "governance"
    # Every file of the package, its policy.toml included, and not the dev tree's bytecode.
    shipped = {
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert Path("remediation/policy.toml") in shipped
    for relative in shipped:
        assert (python / "governance" / relative).read_bytes() == (source / relative).read_bytes(), relative
    assert not [p for p in (python / "governance").rglob("*.pyc") if "cpython-313" not in p.name]
    assert (python / "pydantic_core").is_dir()
    assert (python / "aws_lambda_powertools").is_dir()
    # The runtime's own botocore must not be shadowed by a copy in the layer.
    assert not (python / "botocore").exists()


def test_every_native_extension_in_the_layer_is_aarch64(build_dir: Path) -> None:
    extensions = sorted((build_dir / "GovernanceLayer").rglob("*.so"))
    assert any("pydantic_core" in str(path) for path in extensions), "pydantic-core's extension is missing"
    wrong = {
        str(path.relative_to(build_dir)): EM_NAMES.get(elf_machine(path), "?")
        for path in extensions
        if elf_machine(path) != EM_AARCH64
    }
    assert wrong == {}, f"built for the wrong architecture: {wrong}"


def test_every_module_in_the_layer_ships_its_bytecode(build_dir: Path) -> None:
    # Lambda cannot write .pyc files to /opt: a module without one is compiled at every cold start.
    modules, problems = bytecode_problems(build_dir / "GovernanceLayer" / "python", "python3.13")
    assert modules > 300  # Powertools, pydantic and the governance package
    assert problems == {}
