"""Regenerate the Python modules of ``proto/inference.proto``.

Run ``python -m proto.generate`` after editing the ``.proto``. The generated files are
committed (so the package runs without grpcio-tools), and a test regenerates them into a
temporary folder and compares bytes, so they cannot drift from the source.

protoc runs from the repository root with ``-I .``: the descriptor's file name is then
``proto/inference.proto`` and the generated gRPC module says
``from proto import inference_pb2``, which resolves inside this package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_FILE = "proto/inference.proto"
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")
# Headers added after protoc runs, so `mypy --strict` passes over generated code.
# The stub: protoc writes bare ``Mapping`` in constructor signatures (type-arg), and mypy
# reads the stub instead of the .py; strict mode stays on for everything else in it.
# The gRPC module has no stub and no annotations at all; callers treat it as untyped.
HEADERS = {
    "inference_pb2.pyi": '# mypy: disable-error-code="type-arg"\n',
    "inference_pb2_grpc.py": "# mypy: ignore-errors\n",
}


class GenerateError(RuntimeError):
    """protoc failed; the message carries its output."""


def generate(out_dir: Path) -> list[Path]:
    """Generate the three modules under ``out_dir / "proto"``; return their paths."""
    out = out_dir.resolve()
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        PROTO_FILE,
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GenerateError(f"protoc exited {done.returncode}: {done.stderr.strip()}")
    for name, header in HEADERS.items():
        path = out / "proto" / name
        path.write_text(header + path.read_text())
    return [out / "proto" / name for name in GENERATED]


def main() -> None:
    """Entry point: regenerate the committed modules in place."""
    for path in generate(REPO_ROOT):
        print(f"wrote {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
