"""The floor: the webhook's server stack (uvicorn, FastAPI, ``httpserver.uvicorn_config``, the
same TLS context) with a ``/mutate`` that answers a fixed, precomputed AdmissionReview response
without reading the pod. What the webhook costs above this is the cost of its own work.

``python -m bench.floor --port P --tls-cert C --tls-key K``; serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal

import orjson
from fastapi import FastAPI
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
RESPONSE = orjson.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "allowed": True,
            "patch": base64.b64encode(orjson.dumps(_PATCH * 12)).decode(),
            "patchType": "JSONPatch",
        },
    }
)


def create_floor_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/mutate")
    async def mutate() -> Response:
        return Response(RESPONSE, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


async def _serve(port: int, cert: str, key: str) -> None:
    settings = ServerSettings(bind_address="127.0.0.1", port=port, metrics_port=port + 1)
    context = create_context(settings.tls_min_version, settings.tls_cipher_suites)
    context.load_cert_chain(cert, key)
    server = HttpServer(uvicorn_config(create_floor_app(), settings, port, context))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.tls_cert, args.tls_key))


if __name__ == "__main__":
    main()
