"""The part of ``grpc.aio.ServicerContext`` the servicers use, for calling them in process."""

from __future__ import annotations

import grpc


class Aborted(Exception):
    """What ``FakeContext.abort`` raises: ``args`` are the status code and the details."""


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)
