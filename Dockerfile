# The irsa-webhook container image.
#
#   docker build -t irsa-webhook:0.1.0 .
#
# Two stages: the build stage installs the locked dependencies and the project's wheel into a virtual
# environment at /opt/venv; the runtime stage is the same Python base with only that environment
# copied in. The image runs as a numeric non-root user and writes nothing at run time, so it works
# with a read-only root file system.

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /src

# Dependencies first, exactly as locked, so that a code change reuses this layer.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-default-groups --no-install-project

# Then the project itself, built into a wheel and installed (not as an editable link).
COPY README.md ./
COPY src ./src
RUN uv sync --locked --no-default-groups --no-editable \
    && /opt/venv/bin/irsa-webhook --help >/dev/null


FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="irsa-webhook" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that gives pods AWS IAM roles (IRSA); a drop-in for the EKS pod identity webhook" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# Bytecode was compiled in the build stage; at run time Python must not try to write any.
# IRSA_WEBHOOK_PORT: a non-root process cannot bind the flag's default port 443.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IRSA_WEBHOOK_PORT=8443

COPY --from=build /opt/venv /opt/venv

USER 65532:65532

# 8443: the TLS webhook (/mutate, /healthz, /readyz); 9999: plain-HTTP /metrics.
EXPOSE 8443 9999

ENTRYPOINT ["irsa-webhook"]
CMD ["serve"]
