#!/usr/bin/env bash
# Installs everything Tether's test suite needs on Debian 12 (as root), then, with
# --run-tests, runs the whole suite. This is the README's second Quick-start command.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build of native modules (better-sqlite3, node-pty, sd-notify)
  build-essential python3 libsystemd-dev
  # real parts the integration tests drive
  iproute2 nftables iperf3 bird2 frr etcd-server dnsmasq socat tcpdump systemd prometheus
  procps psmisc kmod iputils-ping
  # first boot: DHCP client (udhcpc of busybox-static, listed below), config drive tests (mkfs.ext4, blkid, losetup)
  e2fsprogs util-linux mount
  # standard CNI plugins chained after tether-cni (test/e2e/cni-chain.test.ts)
  containernetworking-plugins
  # a real container runtime (podman 4, CNI backend) driving tether-cni: CI fails on skipped tests
  podman runc busybox-static
  # the zsh completion script is loaded by a real zsh (test/unit/cli/completion.test.ts)
  zsh
)

export DEBIAN_FRONTEND=noninteractive
echo "==> apt-get install ${APT_PACKAGES[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null

echo "==> npm ci" >&2
npm ci --no-audit --no-fund

if [[ "${1:-}" == "--run-tests" ]]; then
  echo "==> npm test" >&2
  exec npm test
fi
