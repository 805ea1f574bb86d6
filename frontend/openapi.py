"""What the OpenAPI page (``/docs``) says about each HTTP route of `frontend.http`.

The v2 request body is documented by the schema that parses it
(`frontend.rest.InferRequest`).  The rest is written out here, as keyword arguments of
``FastAPI.add_api_route``: the answers (encoded by `frontend.rest`, never parsed
here) and the Clipper request (checked by `frontend.rest.parse_clipper`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from frontend.rest import InferRequest

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
        "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 10]},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer"}},
        },
        "data": {"type": "array", "items": {}, "description": "row-major values"},
    },
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


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` with its definitions inlined: an OpenAPI request
    body given by hand (``openapi_extra``) cannot refer to pydantic's ``$defs``."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rpartition("/")[2]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


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
    "openapi_extra": {"requestBody": {"required": True, **_json(body_schema(InferRequest))}},
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
