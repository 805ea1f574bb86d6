"""What the OpenAPI page (``/docs``) says about each HTTP route of `frontend.http`.

The handlers parse bodies themselves (see `frontend.rest`), so FastAPI cannot derive
these schemas from them; they are written out here, as keyword arguments of
``FastAPI.add_api_route``, and kept out of the handlers' way.
"""

from __future__ import annotations

from typing import Any

DESCRIPTION = """\
Prediction serving with erasure-coded resilience (parity models).

Every answer says where it came from: `original`, `reconstructed` (decoded from a
parity model's output because the original was late) or `default` (nothing was ready
by the deadline). Request parameters: `timeout_ms` (a deadline) and
`parm_require_original` (never reconstruct). The `Parm-Timeout-Ms` header sets the
client's own deadline, as a gRPC deadline does. Errors: 400 bad input, 404 unknown
model, 413 body too large, 429 over the admission limit, 503 no instance ready or
instances failing, 504 deadline exceeded.
"""

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "example": "FP32"},
        "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 64]},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer"}},
        },
        "data": {"type": "array", "items": {}, "description": "row-major values"},
    },
    "required": ["name", "datatype", "shape"],
}
_INFER_REQUEST = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "timeout_ms": {"type": "number"},
                "parm_require_original": {"type": "boolean"},
                "binary_data_output": {"type": "boolean"},
            },
        },
        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1, "maxItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data": {"type": "boolean"}},
                    },
                },
            },
        },
    },
    "required": ["inputs"],
}
_INFER_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "parm_source": {"enum": ["original", "reconstructed", "default"]},
                "parm_sources": {
                    "type": "string",
                    "description": "batches: one source per row, comma-separated",
                },
            },
        },
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
_PREDICTION = {
    "type": "object",
    "properties": {
        "query_id": {"type": "integer"},
        "output": {"type": "array", "items": {}},
        "default": {"type": "boolean"},
        "default_explanation": {"type": "string"},
        "source": {"enum": ["original", "reconstructed", "default"]},
    },
}
_PREDICT_REQUEST = {
    "type": "object",
    "properties": {
        "input": {"type": "array", "items": {}, "description": "one input, flat or shaped"},
        "input_batch": {"type": "array", "items": {"type": "array", "items": {}}},
        "timeout_ms": {"type": "number"},
        "parm_require_original": {"type": "boolean"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int, schema: dict[str, Any] = _ERROR) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Bad input",
        404: "Unknown model",
        413: "Body too large",
        429: "Over the admission limit",
        503: "No instance ready, or the instances failed the query",
        504: "Deadline exceeded",
    }
    return {code: {"description": text[code], **_json(schema)} for code in codes}


_HEALTH_ERROR: dict[int | str, dict[str, Any]] = {400: {"description": "Not ready"}}

LIVE: dict[str, Any] = {"summary": "Server liveness"}
READY: dict[str, Any] = {
    "summary": "Server readiness: every model can answer",
    "responses": _HEALTH_ERROR,
}
SERVER: dict[str, Any] = {"summary": "Server metadata"}
MODEL: dict[str, Any] = {"summary": "Model metadata", "responses": _errors(404)}
MODEL_READY: dict[str, Any] = {
    "summary": "Model readiness",
    "responses": {**_HEALTH_ERROR, **_errors(404)},
}
INFER: dict[str, Any] = {
    "summary": "Inference (KServe v2; JSON or binary tensors)",
    "description": (
        "With the binary tensor extension the body is the JSON request of "
        "`Inference-Header-Content-Length` bytes, then each input's raw bytes."
    ),
    "responses": {
        200: {"description": "Outputs and provenance", **_json(_INFER_RESPONSE)},
        **_errors(400, 404, 413, 429, 503, 504),
    },
    "openapi_extra": {"requestBody": {"required": True, **_json(_INFER_REQUEST)}},
}
_CLIPPER_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "cause": {"type": "string"}},
}
PREDICT: dict[str, Any] = {
    "summary": "Prediction (Clipper's REST API; the app is the model's name)",
    "responses": {
        200: {
            "description": "One prediction, or batch_predictions",
            **_json(
                {
                    "oneOf": [
                        _PREDICTION,
                        {
                            "type": "object",
                            "properties": {
                                "batch_predictions": {"type": "array", "items": _PREDICTION}
                            },
                        },
                    ]
                }
            ),
        },
        **_errors(400, 404, 413, 429, 503, 504, schema=_CLIPPER_ERROR),
    },
    "openapi_extra": {"requestBody": {"required": True, **_json(_PREDICT_REQUEST)}},
}
