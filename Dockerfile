# syntax=docker/dockerfile:1
#
# fedge: one slim, non-root, CPU-only image for both roles of a real federation.
# The command picks the role (see README, "Run a real federation"):
#
#   coordinator:  docker run ... fedge flower-superlink --host 0.0.0.0 --port 8000 \
#                   --ssl-ca-certfile /certs/ca.crt --ssl-certfile /certs/server.pem \
#                   --ssl-keyfile /certs/server.key --enable-supernode-auth \
#                   --database /state/superlink.db --disable-runtime-dependency-installation
#   hospital:     docker run ... fedge flower-supernode --superlink coordinator:8000 \
#                   --root-certificates /certs/ca.crt \
#                   --auth-supernode-private-key /certs/node.key \
#                   --node-config "data-path='/data'"
#
# Volumes: /data (a hospital's images, read-only), /certs (credentials, read-only),
# /state (SuperLink database), /runs (run directories), /cache (weights, embeddings).
#
# Based on python:3.11-slim rather than flwr/superlink and flwr/supernode: both roles
# need the same fedge code and torch (the SuperLink starts our ServerApp, a SuperNode
# our ClientApp), so one image with one venv serves both.
#
# torch comes from the PyTorch CPU index: the image has no CUDA libraries. Building
# needs network access to that index and to PyPI.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU wheels first; the `torch` extra's pins (torch==2.14.1, torchvision==0.29.1) are then met.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fedge ./fedge
COPY server ./server
COPY client ./client
COPY export ./export
COPY simulations ./simulations
# This installs fedge itself from the copied source; its dependencies carry their pins in
# pyproject.toml, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[torch]"

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 fedge \
    && useradd --system --uid 10001 --gid fedge --create-home --home-dir /home/fedge fedge \
    && mkdir -p /data /certs /state /runs /cache \
    && chown fedge:fedge /state /runs /cache
COPY --from=build /opt/venv /opt/venv
# Flower starts its helper programs (flower-superexec, flwr-serverapp, flwr-clientapp)
# by name, so the venv's bin must be on PATH. fedge is installed already: no `uv sync`.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLWR_HOME=/home/fedge/.flwr \
    FEDGE_CACHE_DIR=/cache \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1
USER 10001:10001
WORKDIR /home/fedge
VOLUME ["/state", "/runs", "/cache"]
EXPOSE 8000
# GET /health: the SuperLink on port 8000 (HTTPS or HTTP), a SuperNode on its local
# Runtime API port 9094. Set FEDGE_HEALTH_URL for other ports.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["fedge", "health"]
CMD ["fedge", "--help"]
