"""The committed generated modules stay in step with proto/inference.proto."""

from pathlib import Path

import pytest

from proto import generate

PROTO_DIR = Path(generate.__file__).parent


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    return generate.generate(tmp_path_factory.mktemp("gen"))


@pytest.mark.parametrize("name", generate.GENERATED)
def test_generated_module_matches_committed(regenerated, name):
    fresh = next(p for p in regenerated if p.name == name)
    assert fresh.read_bytes() == (PROTO_DIR / name).read_bytes(), (
        f"proto/{name} is stale: run `python -m proto.generate`"
    )


def test_grpc_module_imports_the_package_module():
    text = (PROTO_DIR / "inference_pb2_grpc.py").read_text()
    assert "from proto import inference_pb2" in text
