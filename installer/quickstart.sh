#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): installs what Tether needs, then builds
# a whole deployment on this machine in network namespaces with `tether lab up` (a controller,
# a WAN router, two sites with one enrolled node each, workloads in two virtual networks with
# overlapping addresses) and shows it with `tether lab status`. See docs/lab.md.
#   installer/quickstart.sh           install + lab up + lab status
#   installer/quickstart.sh --down    tether lab down (removes exactly what up created)
# Env: TETHER_LAB (lab name, default tl), SKIP_INSTALL=1, and TETHER_LAB_ARGS for extra
# `lab up` flags (e.g. "--sites 3 --nodes-per-site 2").
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=${TETHER_LAB:-tl}
T=./bin/tether

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ "${1:-}" == "--down" ]]; then
  step "tearing down lab $LAB"
  exec $T lab down --name "$LAB"
fi

if [[ "${SKIP_INSTALL:-}" != 1 ]]; then
  step "installing system packages and npm dependencies"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    build-essential python3 libsystemd-dev iproute2 nftables util-linux iputils-ping iperf3 >/dev/null
  npm ci --no-audit --no-fund
fi

if $T lab status --name "$LAB" >/dev/null 2>&1; then
  step "lab $LAB already exists (tear it down with: $0 --down)"
else
  step "bringing up lab $LAB: controller, WAN, 2 sites, nodes, workloads in red and blue"
  # shellcheck disable=SC2086 # TETHER_LAB_ARGS is a list of flags
  $T lab up --name "$LAB" ${TETHER_LAB_ARGS:-}
fi

step "where it stands"
$T lab status --name "$LAB"
# Addresses come from the lab itself (the controller hands each site its own block).
ip_of() {
  $T lab status --name "$LAB" -o json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const w=JSON.parse(s).workloads.find(x=>x.name===process.argv[1]);process.stdout.write(w?w.ip:"?")})' "$1"
}
cat >&2 <<EOF

try:
  ip netns exec $LAB-s1n1w1 ping -c 3 $(ip_of s2n1w1)      # red at site 1 -> red at site 2 over VXLAN
  ip netns exec $LAB-s1n1w1 ping -c 3 10.201.0.1     # local breakout to site 1's router
  ip netns exec $LAB-c $T get vn --config /run/tether-lab/$LAB/controller/admin.yaml
stop with: $0 --down
EOF
