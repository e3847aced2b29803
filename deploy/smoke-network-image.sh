#!/usr/bin/env bash
# Run compose.network.yaml's services inside the image built by deploy/build-image.sh, without a daemon.
#
#   sudo deploy/smoke-network-image.sh [WORKDIR]          # WORKDIR defaults to /tmp/oracle-network-smoke
#
# What compose would run, service by service, with each command and environment read from
# deploy/compose.network.yaml and each named volume a directory under WORKDIR mounted where the
# compose file mounts it: broker-init, network-init, then the three signers, then the three nodes. anvil
# and mosquitto run on the host (the image has neither); mosquitto on broker-init's users, as compose's.
# Where compose would give each node its own network namespace, buildah's chroot isolation shares the
# host's, so the one deviation is ports: node<n>'s signer listens on 127.0.0.1:871<n> instead of
# 127.0.0.1:8711 (compose.network.yaml's nodes each own an 8711), and the names node1..3 resolve to
# 127.0.0.1. Ends when the three nodes answer /healthz and a round of the network status is printed.
# A one-off check, not part of `make test`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-/tmp/oracle-network-smoke}
IMAGE=${IMAGE:-parametric-oracle:0.1.0}
ANVIL_PORT=${ANVIL_PORT:-18545}
MQTT_PORT=${MQTT_PORT:-18831}
export STORAGE_DRIVER=vfs
PY=${PYTHON:-$ROOT/.venv/bin/python}

rm -rf "$WORK" && mkdir -p "$WORK/volumes" "$WORK/logs"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
  if [ -n "${c:-}" ]; then buildah rm "$c" > /dev/null 2>&1; fi
  return 0
}
trap cleanup EXIT

"$ROOT/node_modules/.bin/anvil" --host 127.0.0.1 --port "$ANVIL_PORT" --chain-id 31337 > "$WORK/logs/anvil.log" 2>&1 &
pids+=($!)

c=$(buildah from --pull-never --add-host node1:127.0.0.1 --add-host node2:127.0.0.1 --add-host node3:127.0.0.1 "$IMAGE")

# argv for `buildah run` of one compose service: user, volumes, environment, entrypoint + command.
service_argv() {
  "$PY" - "$ROOT/deploy/compose.network.yaml" "$1" "$WORK/volumes" "$ROOT/deploy" "$ANVIL_PORT" "$MQTT_PORT" << 'EOF'
import sys, yaml
path, name, volumes, deploy, anvil_port, mqtt_port = sys.argv[1:]
svc = yaml.safe_load(open(path))["services"][name]
args = ["--user", svc.get("user", "10001:10001")]
for entry in svc.get("volumes", []):
    src, target, *opts = str(entry).split(":")
    host = f"{deploy}/{src[2:]}" if src.startswith("./") else f"{volumes}/{src}"
    args += ["-v", ":".join([host, target] + opts)]
n = name[4] if name.startswith("node") else ""
def fix(value: str) -> str:
    value = value.replace("http://anvil:8545", f"http://127.0.0.1:{anvil_port}")
    value = value.replace("mqtt://mosquitto:1883", f"mqtt://127.0.0.1:{mqtt_port}")
    return value.replace("8711", f"871{n}") if n else value
for key, value in (svc.get("environment") or {}).items():
    args += ["--env", f"{key}={fix(str(value))}"]
entrypoint = svc.get("entrypoint") or ["oracle"]  # else the image's ENTRYPOINT
command = [fix(a).replace("$$", "$") for a in entrypoint + list(svc.get("command") or [])]
print("\0".join(args + ["--"] + command), end="")
EOF
}

start() {
  local name=$1
  local -a argv
  mapfile -d '' -t argv < <(service_argv "$name")
  local split
  for i in "${!argv[@]}"; do [ "${argv[$i]}" = "--" ] && split=$i; done
  for ((i = 0; i < split; i++)); do
    if [ "${argv[$i]}" = "-v" ]; then
      local host=${argv[$((i + 1))]%%:*}
      case "$host" in "$WORK"/volumes/*) mkdir -p "$host" ;; esac
    fi
  done
  # exec: the background job is buildah itself, so the cleanup's kill reaches it (and it, the process).
  exec buildah run --isolation chroot "${argv[@]:0:$split}" "$c" "${argv[@]:$split}" > "$WORK/logs/$name.log" 2>&1
}

t0=$SECONDS
until curl -fsS -X POST -H 'content-type: application/json' \
  --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "http://127.0.0.1:$ANVIL_PORT" > /dev/null 2>&1; do sleep 0.5; done

# As compose orders them: broker-init writes the broker's dynamic-security file (the ingest workers' and
# the admin's users) and the oracle's MQTT passwords into their volumes, then the broker starts on that
# file, refusing anonymous clients: deploy/mosquitto.conf's settings, with the host's plugin and paths.
echo "== broker-init"
(start broker-init)
tail -n 2 "$WORK/logs/broker-init.log"
plugin=$(find /usr/lib -name mosquitto_dynamic_security.so -print -quit)
[ -n "$plugin" ] || { echo "no mosquitto_dynamic_security.so on this host" >&2; exit 1; }
cat > "$WORK/mosquitto.conf" << CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous false
plugin $plugin
plugin_opt_config_file $WORK/volumes/mosquitto-dynsec/dynamic-security.json
persistence false
# broker-init handed the file to the broker image's user 1883; the host's broker reads it as root
user root
log_dest stdout
CONF
mosquitto -c "$WORK/mosquitto.conf" > "$WORK/logs/mosquitto.log" 2>&1 &
pids+=($!)

echo "== network-init"
(start network-init)
tail -n 2 "$WORK/logs/network-init.log"
ls -l "$WORK/volumes"

for n in 1 2 3; do
  echo "== node$n-signer"
  start "node$n-signer" &
  pids+=($!)
done
for n in 1 2 3; do
  until curl -fsS "http://127.0.0.1:871$n/v1/health" > /dev/null 2>&1; do
    sleep 1
    [ $((SECONDS - t0)) -lt 120 ] || { tail "$WORK/logs/node$n-signer.log"; exit 1; }
  done
  echo "node$n-signer healthy"
done
for n in 1 2 3; do
  echo "== node$n-oracle"
  start "node$n-oracle" &
  pids+=($!)
done
healthy=0
for n in 1 2 3; do
  until curl -fsS "http://127.0.0.1:810$n/healthz" > /dev/null 2>&1; do
    sleep 2
    if [ $((SECONDS - t0)) -gt 300 ]; then tail -n 30 "$WORK/logs/node$n-oracle.log"; exit 1; fi
  done
  echo "node$n /healthz ok ($((SECONDS - t0)) s): $(curl -fsS "http://127.0.0.1:810$n/healthz")"
  healthy=$((healthy + 1))
done
sleep 5
for n in 1 2 3; do
  echo "node$n /readyz: $(curl -sS "http://127.0.0.1:810$n/readyz")"
  grep -m 3 -E "joined|network node|ERROR" "$WORK/logs/node$n-oracle.log" || true
  curl -fsS "http://127.0.0.1:810$n/metrics" | grep -E "^oracle_network_(members|threshold)" || true
done
[ $healthy = 3 ]
