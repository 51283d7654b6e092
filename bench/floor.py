"""The floor: the webhook's server stack (uvicorn, FastAPI, ``httpserver.uvicorn_config``, the
same TLS context) with a ``/mutate`` that answers a fixed, precomputed AdmissionReview response
without reading the pod. What the webhook costs above this is the cost of its own work.

With ``--parse`` the handler also reads the body, parses it with orjson and answers the same
fixed patch under the request's uid: the least any mutating webhook that looks at the pod must
do. The gap between the two floors is what parsing alone costs; the webhook cannot get closer to
the floor than that. Being a valid webhook, it is also the end-to-end baseline of ``bench.run``.

``python -m bench.floor --port P --tls-cert C --tls-key K [--parse]``; serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from irsa_webhook.config import ServerSettings
from irsa_webhook.httpserver import HttpServer, uvicorn_config
from irsa_webhook.tls import create_context

_PATCH = [
    {
        "op": "add",
        "path": "/spec/containers/0/env/-",
        "value": {"name": "AWS_ROLE_ARN", "value": "x"},
    }
]
_ENVELOPE = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
_ANSWER = {
    "uid": "00000000-0000-0000-0000-000000000001",
    "allowed": True,
    "patch": base64.b64encode(orjson.dumps(_PATCH * 12)).decode(),
    "patchType": "JSONPatch",
}
RESPONSE = orjson.dumps({**_ENVELOPE, "response": _ANSWER})


def create_floor_app(parse: bool = False) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    if parse:

        @app.post("/mutate")
        async def parse_and_answer(request: Request) -> Response:
            review = orjson.loads(await request.body())
            # The real uid, so the API server accepts it as a webhook too (bench end to end).
            answer = {**_ANSWER, "uid": review["request"]["uid"]}
            return Response(
                orjson.dumps({**_ENVELOPE, "response": answer}), media_type="application/json"
            )

    else:

        @app.post("/mutate")
        async def answer() -> Response:
            return Response(RESPONSE, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


async def _serve(port: int, cert: str, key: str, parse: bool) -> None:
    settings = ServerSettings(bind_address="127.0.0.1", port=port, metrics_port=port + 1)
    context = create_context(settings.tls_min_version, settings.tls_cipher_suites)
    context.load_cert_chain(cert, key)
    server = HttpServer(uvicorn_config(create_floor_app(parse), settings, port, context))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--parse", action="store_true", help="read and parse the body first")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.tls_cert, args.tls_key, args.parse))


if __name__ == "__main__":
    main()
