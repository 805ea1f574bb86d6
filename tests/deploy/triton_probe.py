"""``python -m tests.deploy.triton_probe GRPC HTTP MODEL``: one query through each of
Triton's clients (``tritonclient.grpc`` and ``tritonclient.http``) against a running
frontend; prints each answer's provenance and shape as JSON.

Run in its own process by the real-engine tests (tests/deploy/engine.py): Triton's
protobuf modules cannot share a process with this project's (tests/proto/test_wire.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def query(meta: dict[str, Any]) -> np.ndarray:
    """One row of the model's input, from its metadata (shape [-1, ...])."""
    shape = [1, *(int(d) for d in meta["inputs"][0]["shape"][1:])]
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def grpc_answer(target: str, model: str) -> dict[str, Any]:
    import tritonclient.grpc as triton

    with triton.InferenceServerClient(target) as client:
        meta = client.get_model_metadata(model, as_json=True)
        x = query(meta)
        tensor = triton.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor], request_id="grpc-1")
        params = result.get_response().parameters
        return {
            "id": result.get_response().id,
            "source": params["parm_source"].string_param,
            "shape": list(result.as_numpy(meta["outputs"][0]["name"]).shape),
        }


def http_answer(target: str, model: str) -> dict[str, Any]:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(target)
    try:
        meta = client.get_model_metadata(model)
        x = query(meta)
        tensor = triton.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor], request_id="http-1")
        response = result.get_response()
        return {
            "id": response["id"],
            "source": response["parameters"]["parm_source"],
            "shape": list(result.as_numpy(meta["outputs"][0]["name"]).shape),
        }
    finally:
        client.close()


def main(argv: list[str]) -> None:
    grpc_target, http_target, model = argv
    report = {
        "grpc": grpc_answer(grpc_target, model),
        "http": http_answer(http_target, model),
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
