"""The validating STS: an HTTP front before moto's STS.

AssumeRoleWithWebIdentity is validated here (``web_identity.validate``) and refused with STS's
own error document, or forwarded to moto, whose credentials then belong to the role (so a later
GetCallerIdentity with them names it). Every other action goes to moto untouched.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from irsa_lab import sts_errors
from irsa_lab.sts_errors import StsError, error_document
from irsa_lab.web_identity import Assumption, Directory, KeySource, TrustPolicy, validate

log = logging.getLogger(__name__)

# Request headers moto needs to route and parse a call; the rest (Host, lengths, encodings)
# belong to each hop.
_FORWARDED = ("content-type", "authorization", "user-agent")
_RESULT_END = b"</AssumeRoleWithWebIdentityResult>"


@dataclass
class Validator:
    directory: Directory
    keys: KeySource
    trust: TrustPolicy
    clock: Callable[[], float] = time.time

    def __call__(self, params: dict[str, str]) -> Assumption:
        return validate(params, self.directory, self.keys, self.trust, self.clock())


def create_app(validator: Validator, moto_url: str, ca_bundle: str | None = None) -> Starlette:
    """The STS front before moto at ``moto_url`` (https trusted by ``ca_bundle``, if so)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        verify = ssl.create_default_context(cafile=ca_bundle)
        async with httpx.AsyncClient(base_url=moto_url, timeout=30, verify=verify) as client:
            app.state.moto = client
            yield

    async def forward(request: Request, body: bytes) -> httpx.Response:
        moto: httpx.AsyncClient = request.app.state.moto
        headers = {
            name: value
            for name, value in request.headers.items()
            if name in _FORWARDED or name.startswith("x-amz-")
        }
        return await moto.request(
            request.method,
            request.url.path,
            params=request.url.query,
            content=body,
            headers={**headers, "accept-encoding": "identity"},
        )

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if params.get("Action") != "AssumeRoleWithWebIdentity":
            return _relay(await forward(request, body))
        request_id = str(uuid.uuid4())
        try:
            assumption = await run_in_threadpool(validator, params)
        except StsError as error:
            log.info(
                "AssumeRoleWithWebIdentity refused",
                extra={
                    "role_arn": params.get("RoleArn"),
                    "code": error.code,
                    "reason": error.message,
                },
            )
            return _error_response(error, request_id)
        except Exception as failure:
            # moto unreachable or answering nonsense: the lab's fault, not the caller's.
            log.exception("AssumeRoleWithWebIdentity could not be validated")
            return _error_response(sts_errors.internal_failure(type(failure).__name__), request_id)
        answer = await forward(request, body)
        log.info(
            "AssumeRoleWithWebIdentity granted",
            extra={
                "role_arn": assumption.request.role_arn,
                "subject": assumption.subject,
                "moto_status": answer.status_code,
            },
        )
        if answer.status_code != 200:
            return _relay(answer)
        return _relay(answer, with_token_facts(answer.content, assumption))

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"])], lifespan=lifespan)


def _error_response(error: StsError, request_id: str) -> Response:
    return Response(
        error_document(error, request_id),
        status_code=error.status,
        media_type="text/xml",
        headers={"x-amzn-RequestId": request_id},
    )


def _relay(answer: httpx.Response, content: bytes | None = None) -> Response:
    """moto's answer as ours: its status, body (or ``content``), type and request id."""
    headers = {
        name: value
        for name, value in answer.headers.items()
        if name.lower() in ("content-type", "x-amzn-requestid")
    }
    return Response(
        answer.content if content is None else content,
        status_code=answer.status_code,
        headers=headers,
    )


def with_token_facts(document: bytes, assumption: Assumption) -> bytes:
    """moto's answer plus what AWS's also says about the token: its subject, the audience that
    matched and the provider (moto leaves these three out)."""
    facts = (
        f"<SubjectFromWebIdentityToken>{escape(assumption.subject)}</SubjectFromWebIdentityToken>"
        f"<Audience>{escape(assumption.audience)}</Audience>"
        f"<Provider>{escape(assumption.provider.arn)}</Provider>"
    ).encode()
    return document.replace(_RESULT_END, facts + _RESULT_END, 1)
