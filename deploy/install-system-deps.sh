#!/usr/bin/env bash
# Installs the Debian packages the oracle's tests and `make run` need, only when they are missing.
#   mosquitto   the MQTT broker (started by the service and the tests as a child process), with its
#               dynamic-security plugin (mosquitto_dynamic_security.so, in the same package since 2.0)
#   mosquitto-clients  mosquitto_sub, which compose's broker health check runs (tested against a real broker)
#   postgresql  server binaries, so the tests can start a throwaway cluster when none answers on 5432
#   chromium    the browser the dashboard tests drive with Playwright
# Usage: install-system-deps.sh [python-venv]
set -euo pipefail

need=()
if [ "${1:-}" = "python-venv" ]; then
  need+=(python3-venv)
else
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  compgen -G "/usr/lib/*/mosquitto_dynamic_security.so" >/dev/null || [ -f /usr/lib/mosquitto_dynamic_security.so ] \
    || [[ " ${need[*]} " == *" mosquitto "* ]] || need+=(mosquitto)
  command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts packaged services on install; the oracle starts its own on free ports instead.
if [[ " ${need[*]} " == *" mosquitto "* ]]; then
  (systemctl disable --now mosquitto || service mosquitto stop || true) >/dev/null 2>&1
fi
