"""An HTTP load client in its own process: ``python -m bench.http_client ...``.

Closed loop, like `bench.client` (gRPC): ``concurrency`` workers each send a query and
wait for its answer over keep-alive connections (aiohttp; httpx costs more per request
than the server on this path).  ``--protocol``: ``v2-json`` (KServe v2 REST, JSON
tensors), ``v2-binary`` (the binary tensor extension, as ``tritonclient.http`` sends
by default) or ``clipper`` (``POST /<app>/predict``).  Latency is measured here, at the
client; warm-up queries are excluded.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np

from bench.closed_loop import Outcome, closed_loop

PROTOCOLS = ("v2-json", "v2-binary", "clipper")


@dataclass(frozen=True)
class HttpLoop:
    url: str  # http://host:port
    model: str
    protocol: str
    concurrency: int
    queries: int
    warmup: int = 200


def requests(
    spec: HttpLoop, name: str, features: int
) -> tuple[str, list[tuple[bytes, dict[str, str]]]]:
    """The path and 64 pre-encoded bodies (with their headers) for ``spec.protocol``."""
    rng = np.random.default_rng(0)
    rows = [rng.random((1, features), dtype=np.float32) for _ in range(64)]
    if spec.protocol == "clipper":
        return f"/{spec.model}/predict", [
            (json.dumps({"input": row[0].tolist()}).encode(), {"content-type": "application/json"})
            for row in rows
        ]
    bodies = []
    for row in rows:
        tensor = {"name": name, "datatype": "FP32", "shape": [1, features]}
        if spec.protocol == "v2-json":
            body = json.dumps({"inputs": [{**tensor, "data": row[0].tolist()}]}).encode()
            bodies.append((body, {"content-type": "application/json"}))
            continue
        raw = row.tobytes()
        head = {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
        text = json.dumps(head).encode()
        headers = {"inference-header-content-length": str(len(text))}
        bodies.append((text + raw, headers))
    return f"/v2/models/{spec.model}/infer", bodies


def source_of(protocol: str, content: bytes, headers: Mapping[str, str]) -> str:
    """The provenance an answer reports."""
    length = headers.get("Inference-Header-Content-Length")
    doc = json.loads(content[: int(length)] if length else content)
    if protocol == "clipper":
        return str(doc["source"])
    return str(doc["parameters"]["parm_source"])


async def run_http_loop(spec: HttpLoop) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    async with aiohttp.ClientSession(spec.url, connector=connector) as session:
        async with session.get(f"/v2/models/{spec.model}") as r:
            meta = await r.json()
        tensor = meta["inputs"][0]
        path, bodies = requests(spec, tensor["name"], int(np.prod(tensor["shape"][1:])))

        async def send(i: int) -> Outcome:
            body, headers = bodies[i % len(bodies)]
            async with session.post(path, data=body, headers=headers) as r:
                content = await r.read()
                status, answer_headers = r.status, r.headers  # case-insensitive
            if status != 200:
                return Outcome(error=str(status))
            return Outcome(source_of(spec.protocol, content, answer_headers))

        result = await closed_loop(
            send, concurrency=spec.concurrency, queries=spec.queries, warmup=spec.warmup
        )
    result["protocol"] = spec.protocol
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.http_client", description=__doc__)
    p.add_argument("--url", required=True, help="http://host:port of the frontend's HTTP API")
    p.add_argument("--model", required=True)
    p.add_argument("--protocol", choices=PROTOCOLS, default="v2-binary")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    a = p.parse_args(argv)
    spec = HttpLoop(a.url, a.model, a.protocol, a.concurrency, a.queries, a.warmup)
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, a little slower
        result = asyncio.run(run_http_loop(spec))
    else:
        result = uvloop.run(run_http_loop(spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
