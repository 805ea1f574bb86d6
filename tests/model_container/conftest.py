"""The tiny bundle every in-process and container test of this folder serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model_container.container_process import MODEL, make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / MODEL)
