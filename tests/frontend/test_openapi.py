"""The OpenAPI documentation (frontend/openapi.py): the v2 body is the parser's schema."""

from typing import Any

from pydantic import BaseModel

from frontend import openapi
from frontend.rest import InferRequest


class Leaf(BaseModel):
    value: int


class Tree(BaseModel):
    leaves: list[Leaf]
    first: Leaf


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_body_schema_inlines_every_definition() -> None:
    schema = openapi.body_schema(Tree)
    assert "$defs" not in schema and _refs(schema) == []
    assert schema["properties"]["first"]["properties"]["value"]["type"] == "integer"
    assert schema["properties"]["leaves"]["items"]["required"] == ["value"]


def test_the_infer_route_documents_the_schema_that_parses_it() -> None:
    body = openapi.INFER["openapi_extra"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == openapi.body_schema(InferRequest)
    tensor = body["schema"]["properties"]["inputs"]["items"]
    assert tensor["required"] == ["name", "datatype", "shape"]
    parameters = body["schema"]["properties"]["parameters"]["properties"]
    assert parameters["timeout_ms"]["type"] == "number"
    assert parameters["parm_require_original"]["type"] == "boolean"
