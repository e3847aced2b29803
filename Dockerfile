# The oracle service image, plus a local-chain (anvil) image for compose.
#
#   docker build -t parametric-oracle .                       # the service (last stage, the default)
#   docker build --target anvil -t parametric-oracle-anvil .   # anvil from the pinned npm lockfile
#
# One image runs every oracle process; the command picks the role:
#   oracle run --no-demo          API, scheduler, outbox, chain listener (the default)
#   oracle ingest telemetry       MQTT telemetry worker
#   oracle signer serve           the signer, the only process that holds the key
#
# Base images are pinned by exact tag. Pin them by digest too (`python:3.11.7-slim-bookworm@sha256:...`)
# once the digest has been looked up where a registry is reachable; tags can be re-pushed.

# ---------------------------------------------------------------------------------------------
# builder: resolve nothing, verify everything. Dependencies come only from requirements.lock and
# must match its hashes; the package itself is installed without dependencies.
# ---------------------------------------------------------------------------------------------
FROM python:3.11.7-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src

# The lock alone first: this (slow) layer is rebuilt only when the pins change, not on every code edit.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --require-hashes -r requirements.lock

# README.m[d] matches README.md when it exists and nothing otherwise, so the build works either way.
COPY pyproject.toml README.m[d] ./
COPY oracle ./oracle
COPY ingest ./ingest
COPY models ./models
# --no-deps: every dependency is already installed from the lock; nothing may be resolved here.
# pip byte-compiles what it installs, so the runtime (which never writes bytecode) starts fast.
# `oracle --help` proves the entry point imports before the image is assembled.
RUN pip install --no-cache-dir --no-deps . \
 && oracle --help > /dev/null

# ---------------------------------------------------------------------------------------------
# anvil: a local EVM chain for compose (development and demos only; production points
# ORACLE_CHAIN_RPC_URL at a real node). Installed with `npm ci`, so the lockfile's integrity
# hashes are checked and the version is the one the tests use.
# ---------------------------------------------------------------------------------------------
FROM node:20.18.1-bookworm-slim AS anvil

WORKDIR /opt/toolchain
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# uid 1000 is the unprivileged `node` user of the official node images.
USER 1000:1000
EXPOSE 8545
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8545',{method:'POST',headers:{'content-type':'application/json'},body:'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":[]}'}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/opt/toolchain/node_modules/.bin/anvil"]
CMD ["--host", "0.0.0.0", "--port", "8545", "--chain-id", "31337"]

# ---------------------------------------------------------------------------------------------
# runtime: the virtual environment and the compiled contract artifacts, nothing else
# (no compiler, no pip cache, no sources beyond the installed package).
# ---------------------------------------------------------------------------------------------
FROM python:3.11.7-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    ORACLE_DATA_DIR=/var/lib/oracle \
    ORACLE_CONTRACTS_BUILD_DIR=/app/contracts/build \
    ORACLE_PRODUCTS_DIR=/app/products \
    ORACLE_API_HOST=0.0.0.0 \
    ORACLE_API_PORT=8000

# LightGBM's wheel links the GNU OpenMP runtime, which slim bookworm does not ship: without it the
# cold-chain model cannot load (found by building and running this image with buildah, deploy/README.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
 && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid so volume ownership is predictable across rebuilds and hosts.
RUN groupadd --system --gid 10001 oracle \
 && useradd --system --uid 10001 --gid oracle --home-dir /var/lib/oracle --no-create-home \
      --shell /usr/sbin/nologin oracle \
 && install -d -o oracle -g oracle -m 0750 /var/lib/oracle \
 && install -d -o oracle -g oracle -m 0700 /var/lib/oracle/signer
# The directories exist in the image so that named volumes mounted on them start out owned by the
# oracle user (Docker copies ownership from the image into an empty volume).

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY contracts/build ./contracts/build
# Insurance products (terms files and their reference series) listed by GET /v1/products.
COPY products ./products

USER 10001:10001
EXPOSE 8000

# Liveness of the API (slim images have no curl; urlopen raises, and so exits non-zero, on any
# error status or refused connection). Worker and signer containers override this check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ORACLE_API_PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["oracle"]
CMD ["run", "--no-demo"]
