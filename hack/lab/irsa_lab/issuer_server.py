"""The lab's issuer: the objects ``oidc publish`` put into moto's S3, served over TLS.

On AWS the issuer is an S3 bucket (or CloudFront before one) that STS reads anonymously over
https. moto speaks plain http, so this front gives the bucket an https URL with the lab's
certificate, path style (``https://<host>/<bucket>/<key>``): the issuer is then
``https://<host>/<bucket>`` and its documents are exactly what is in the bucket.
Only reads of objects pass; a bucket listing is refused, as an anonymous read policy on two keys
would refuse it.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# What S3 says about an object that an https reader of it gets to see.
_OBJECT_HEADERS = ("content-type", "cache-control", "etag", "last-modified")


def create_app(moto_url: str, ca_bundle: str | None = None) -> Starlette:
    """The issuer before moto at ``moto_url`` (https trusted by ``ca_bundle``, if so)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        verify = ssl.create_default_context(cafile=ca_bundle)
        async with httpx.AsyncClient(base_url=moto_url, timeout=10, verify=verify) as client:
            app.state.s3 = client
            yield

    async def read_object(request: Request) -> Response:
        s3: httpx.AsyncClient = request.app.state.s3
        bucket, _, key = request.path_params["path"].partition("/")
        if not bucket or not key:
            return Response(b"only objects are served here\n", status_code=403)
        answer = await s3.get(f"/{bucket}/{key}", headers={"accept-encoding": "identity"})
        headers = {name: answer.headers[name] for name in _OBJECT_HEADERS if name in answer.headers}
        return Response(answer.content, status_code=answer.status_code, headers=headers)

    return Starlette(routes=[Route("/{path:path}", read_object)], lifespan=lifespan)
