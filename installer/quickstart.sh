#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): installs what Tether needs, starts a
# controller on the embedded store plus one node enrolled into it, and shows where they
# stand. Everything lives under $TETHER_QS_DIR (default /var/lib/tether-quickstart);
# `installer/quickstart.sh --down` stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
QS=${TETHER_QS_DIR:-/var/lib/tether-quickstart}
PORT=${TETHER_QS_PORT:-7443}
T=./bin/tether

step() { printf '\n==> %s\n' "$*" >&2; }

stop_all() {
  for f in "$QS"/*.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
    rm -f "$f"
  done
}

if [[ "${1:-}" == "--down" ]]; then
  stop_all
  echo "stopped; state kept in $QS (rm -rf it to start over)" >&2
  exit 0
fi

if [[ "${SKIP_INSTALL:-}" != 1 ]]; then
  step "installing system packages and npm dependencies"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential python3 libsystemd-dev iproute2 nftables >/dev/null
  npm ci --no-audit --no-fund
fi

mkdir -p "$QS"
stop_all
if [[ ! -f "$QS/controller/pki/ca.key" ]]; then
  step "initialising the controller in $QS/controller"
  $T controller init --data-dir "$QS/controller" --listen "127.0.0.1:$PORT" --advertise "127.0.0.1:$PORT"
fi
export TETHER_CONFIG="$QS/controller/admin.yaml"

step "starting the controller (log: $QS/controller.log)"
$T controller start --data-dir "$QS/controller" >"$QS/controller.log" 2>&1 &
echo $! >"$QS/controller.pid"
for _ in $(seq 1 100); do $T get sites >/dev/null 2>&1 && break; sleep 0.2; done

if [[ ! -f "$QS/node/identity.yaml" ]]; then
  step "creating a join token for site quickstart and enrolling node qs-node-1"
  token=$($T token create --site quickstart --ttl 15m)
  $T node enroll --controller "127.0.0.1:$PORT" --token "$token" --name qs-node-1 --state-dir "$QS/node"
fi

step "starting the node daemon (log: $QS/node.log)"
$T node run --no-vrouter --state-dir "$QS/node" >"$QS/node.log" 2>&1 &
echo $! >"$QS/node.pid"

step "applying a VirtualNetwork"
$T apply -f - <<'YAML'
apiVersion: tether.dev/v1
kind: VirtualNetwork
metadata:
  name: red
spec:
  subnets: ["10.1.0.0/24"]
  localBreakout: true
YAML
for _ in $(seq 1 50); do
  $T status --state-dir "$QS/node" -o json 2>/dev/null | grep -q '"session": "connected"' && break
  sleep 0.2
done

step "where they stand"
$T get nodes
$T get vn
$T status --state-dir "$QS/node"
printf '\nstop with: %s --down\n' "$0" >&2
