#!/usr/bin/env bash
# Build the oracle service image without a Docker daemon, start it, and check its health check.
#
#   sudo deploy/build-image.sh [WORKDIR]          # WORKDIR defaults to /tmp/oracle-image
#
# Needs Debian's buildah and mmdebstrap (apt-get install -y buildah mmdebstrap) and root (or a user
# namespace set up for rootless buildah). Steps:
#   1. mmdebstrap makes a minimal Debian bookworm root filesystem with Python 3.11 from Debian's
#      archive (the distribution's default mirror: no host is named here);
#   2. buildah imports it as a local base image and tags it with the name the Dockerfile's FROM
#      uses, so `--pull=never` never asks an image registry for it;
#   3. buildah builds the Dockerfile's `runtime` stage (the service) on it, vfs storage, chroot
#      isolation: no daemon, no overlay mount, no network namespace;
#   4. a container of the image runs the image's command, `oracle run --no-demo`, against a host
#      anvil and mosquitto, and the image's own HEALTHCHECK command is run inside it until it passes.
# Each step prints its wall time. Steps already done (rootfs tarball, base image, service image) are
# skipped on a second run; REBUILD=1 rebuilds the service image. Nothing is written into the
# repository: the root filesystem tarball and the image stay in WORKDIR and buildah's storage.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-/tmp/oracle-image}
SUITE=bookworm
# The FROM of the Dockerfile's builder and runtime stages; the local base is tagged with this name.
BASE_NAME=$(sed -nE 's/^FROM[[:space:]]+(python:[^[:space:]]+)[[:space:]]+AS[[:space:]]+runtime.*/\1/p' "$ROOT/Dockerfile")
IMAGE=${IMAGE:-parametric-oracle:0.1.0}
HEALTH_PORT=${HEALTH_PORT:-18000}
export STORAGE_DRIVER=vfs
export BUILDAH_ISOLATION=chroot

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
timed() {
  local t0=$SECONDS
  "$@"
  printf -- '-- %ss: %s\n' "$((SECONDS - t0))" "$*"
}

[ -n "$BASE_NAME" ] || { echo "no python base image in the Dockerfile's runtime FROM" >&2; exit 1; }
mkdir -p "$WORK"

step "1. root filesystem ($SUITE, minbase + Python 3.11)"
if [ ! -s "$WORK/rootfs.tar" ]; then
  # python-is-python3: the Dockerfile runs `python`, as the official python images provide it.
  timed mmdebstrap --variant=minbase \
    --include=python3.11,python3.11-venv,python-is-python3,ca-certificates \
    "$SUITE" "$WORK/rootfs.tar"
fi
ls -l "$WORK/rootfs.tar"

step "2. local base image $BASE_NAME"
if ! buildah inspect --type image "$BASE_NAME" > /dev/null 2>&1; then
  c=$(buildah from scratch)
  timed buildah add "$c" "$WORK/rootfs.tar" /
  # The official python images put the interpreter first on PATH; Debian's is /usr/bin/python.
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$c"
  timed buildah commit --rm "$c" "$BASE_NAME"
fi

step "3. build the service image $IMAGE (Dockerfile stage runtime)"
# The build downloads the pinned wheels (pip --require-hashes). Where outbound HTTPS goes through an
# inspecting proxy, its CA must be trusted during the build only: the host's bundle and a pip.conf
# that points at it are mounted into the RUN steps and are not part of any layer.
cat > "$WORK/pip.conf" <<'EOF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
EOF
if [ -n "${REBUILD:-}" ] || ! buildah inspect --type image "$IMAGE" > /dev/null 2>&1; then
timed buildah bud --isolation chroot --pull=never --layers=false --format docker \
  --target runtime -t "$IMAGE" \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  -v "$WORK/pip.conf:/etc/pip.conf:ro" \
  -f "$ROOT/Dockerfile" "$ROOT"
fi
buildah images "$IMAGE"

step "4. start the image and run its health check"
# The service needs a chain with the contracts deployed and an MQTT broker. The image holds neither
# (anvil is the separate `anvil` stage, whose node base image cannot be pulled here), so both run on
# the host: `oracle chain up` from the repository's virtual environment starts anvil and deploys the
# contracts into a data directory, and a host mosquitto listens on loopback. The container shares
# the host's network (chroot isolation), mounts that data directory as /var/lib/oracle and runs the
# image's own command, `oracle run --no-demo`, with the two URLs configured (dev, SQLite, embedded
# content store), as the image's user 10001.
: "${ORACLE_BIN:=$ROOT/.venv/bin/oracle}"
MQTT_PORT=${MQTT_PORT:-18830}
data="$WORK/data"
rm -rf "$data" && mkdir -p "$data"
cleanup() {
  set +e
  if [ -n "${server:-}" ]; then kill "$server" 2> /dev/null; wait "$server" 2> /dev/null; fi
  if [ -n "${broker:-}" ]; then kill "$broker" 2> /dev/null; wait "$broker" 2> /dev/null; fi
  ORACLE_DATA_DIR="$data" "$ORACLE_BIN" chain down > /dev/null 2>&1
  if [ -n "${c:-}" ]; then buildah rm "$c" > /dev/null 2>&1; fi
  return 0
}
trap cleanup EXIT
chain_url=$(ORACLE_DATA_DIR="$data" "$ORACLE_BIN" chain up --port 0 | sed -nE 's/.*(http:\/\/127\.0\.0\.1:[0-9]+).*/\1/p' | head -n 1)
[ -n "$chain_url" ] || { echo "oracle chain up printed no RPC URL" >&2; exit 1; }
echo "host anvil at $chain_url"
mosquitto -p "$MQTT_PORT" > "$WORK/mosquitto.log" 2>&1 &
broker=$!
chown -R 10001:10001 "$data"

# The image's configuration as built (docker format: the OCI format has no HEALTHCHECK).
config=$(buildah inspect --type image "$IMAGE" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["Docker"]["config"]))')
health_cmd=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["Healthcheck"]["Test"]))' "$config")
echo "image HEALTHCHECK: $health_cmd"
echo "image ENTRYPOINT/CMD: $(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); print(c["Entrypoint"], c["Cmd"], "user", c["User"])' "$config")"
c=$(buildah from --pull-never "$IMAGE")
env_args=(--env ORACLE_CHAIN_RPC_URL="$chain_url" --env ORACLE_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"
          --env ORACLE_API_HOST=127.0.0.1 --env ORACLE_API_PORT="$HEALTH_PORT")
t_start=$SECONDS
buildah run --isolation chroot --user 10001:10001 -v "$data:/var/lib/oracle" "${env_args[@]}" \
  "$c" -- oracle run --no-demo > "$WORK/run.log" 2>&1 &
server=$!
# The HEALTHCHECK's own command (exec form), in the same container, as the image's user.
mapfile -t check < <(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); assert t[0]=="CMD"; print("\n".join(t[1:]))' "$health_cmd")
ok=0
for _ in $(seq 1 120); do
  if buildah run --isolation chroot --user 10001:10001 --env ORACLE_API_PORT="$HEALTH_PORT" \
       "$c" -- "${check[@]}" > /dev/null 2>&1; then
    ok=1
    break
  fi
  kill -0 "$server" 2> /dev/null || break
  sleep 2
done
echo "HEALTHCHECK command inside the container: $([ $ok = 1 ] && echo PASSED || echo FAILED) $((SECONDS - t_start))s after start"
if curl -fsS "http://127.0.0.1:$HEALTH_PORT/healthz"; then echo "  <- GET /healthz from the host"; fi
curl -sS "http://127.0.0.1:$HEALTH_PORT/readyz" && echo "  <- GET /readyz from the host" || true
tail -n 15 "$WORK/run.log"
[ $ok = 1 ]
