"""deploy/docker: the Dockerfiles, checked as files (no engine builds them here).

What can be checked without building: each image installs a subset of the project's
dependencies, copies the packages its entry point imports, and starts the right
program; and the frontend's import closure (what its image runs) needs no torch.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from tests.model_container.container_process import REPO_ROOT

DOCKER = REPO_ROOT / "deploy/docker"
IMAGES = {
    "frontend.Dockerfile": (
        '["parm", "frontend"]',
        {"common", "frontend", "model_container", "proto", "deploy", "bench", "train", "cli"},
    ),
    "model-cuda.Dockerfile": (
        '["python", "-m", "model_container"]',
        {"common", "model_container", "proto"},
    ),
    "model-cpu.Dockerfile": (
        '["python", "-m", "model_container"]',
        {"common", "model_container", "proto"},
    ),
}


def requirement_names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ]", spec, maxsplit=1)[0].lower() for spec in specs}


@pytest.mark.parametrize("name", IMAGES)
def test_each_image_installs_declared_dependencies_and_its_packages(name: str) -> None:
    text = (DOCKER / name).read_text()
    entrypoint, packages = IMAGES[name]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    installed = requirement_names(re.findall(r'"([a-z][\w.-]*(?:\[[\w,]+\])?[<>=][^"]*)"', text))
    assert installed and installed <= requirement_names(project["dependencies"])
    copied = set(re.findall(r"^COPY (\w+) \1$", text, re.MULTILINE))
    assert copied == packages
    assert "pip install --no-deps ." in text
    assert f"ENTRYPOINT {entrypoint}" in text


def test_the_model_images_never_bake_in_a_bundle() -> None:
    for name in ("model-cuda.Dockerfile", "model-cpu.Dockerfile"):
        text = (DOCKER / name).read_text()
        assert "/bundles" not in re.sub(r"^#.*$", "", text, flags=re.MULTILINE)


FORBID_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "sklearn", "safetensors"):
            raise ImportError(f"the frontend image has no {name}")
sys.meta_path.insert(0, NoTorch())
import cli.main, cli.deploy, deploy.frontend_file, frontend.http, frontend.server
cli.main._parser()
"""


def test_the_frontend_runs_without_torch() -> None:
    """``parm frontend`` imports nothing the frontend image leaves out."""
    subprocess.run([sys.executable, "-c", FORBID_TORCH], cwd=REPO_ROOT, check=True)


def test_the_build_context_leaves_out_the_virtual_environment() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)
