#!/usr/bin/env bash
# Tether installer / uninstaller, shipped at the top of the release tarball (npm run release).
# Puts Tether onto a Debian 12 host from the extracted tarball, offline (docs/install.md):
#   ./install.sh [--root DIR] [--controller] [--no-enable] [--no-start]
#   ./install.sh --uninstall [--root DIR] [--keep-state] [--netns-prefix P] [--node-netns NS]
#   tether-uninstall [same flags]          (installed to /usr/sbin by the installer)
# Exit codes: 0 done, 1 failed, 2 bad usage or missing dependencies (nothing changed).
set -Eeuo pipefail

ROOT=/
MODE=install
ENABLE=1
START=1
CONTROLLER=0
KEEP_STATE=0
NETNS_PREFIX=
NODE_NETNS=
ALLOW_ABI=0

# Where everything goes (relative to --root). Units go where packages put theirs.
LIBDIR=usr/lib/tether
BINDIR=usr/bin
SBINDIR=usr/sbin
UNITDIR=usr/lib/systemd/system
WANTSDIR=etc/systemd/system
CNIDIR=opt/cni/bin
DOCDIR=usr/share/doc/tether
PROFDIR=usr/share/tether/profiles
# The record of what this installer created (files and directories), read by uninstall.
RECORD=$LIBDIR/INSTALLED
NODE_UNITS=(tether-firstboot.service tether-profile.service tether-node.service)
ALL_UNITS=(tether-firstboot.service tether-profile.service tether-node.service tether-controller.service)
# State and configuration Tether's programs create at run time (removed unless --keep-state);
# the profile's drop-ins are listed in src/profiles/plan.ts (OWNED).
STATE_PATHS=(var/lib/tether etc/tether run/tether)
PROFILE_FILES=(etc/default/grub.d/60-tether.cfg etc/modprobe.d/60-tether-blacklist.conf
  etc/sysctl.d/60-tether.conf etc/udev/rules.d/70-tether-representors.rules)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'tether install: %s\n' "$*" >&2; exit "${2:-1}"; }
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) [[ $# -ge 2 ]] || usage; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --controller) CONTROLLER=1; shift ;;
    --no-enable) ENABLE=0; START=0; shift ;;
    --no-start) START=0; shift ;;
    --keep-state) KEEP_STATE=1; shift ;;
    --netns-prefix) [[ $# -ge 2 ]] || usage; NETNS_PREFIX=$2; shift 2 ;;
    --node-netns) [[ $# -ge 2 ]] || usage; NODE_NETNS=$2; shift 2 ;;
    --allow-abi-mismatch) ALLOW_ABI=1; shift ;;
    -h|--help) usage ;;
    *) printf 'tether install: unknown argument "%s"\n' "$1" >&2; usage ;;
  esac
done
[[ "$(basename "$0")" == tether-uninstall ]] && MODE=uninstall
[[ -d "$ROOT" ]] || die "--root $ROOT: not a directory" 2
ROOT=$(cd "$ROOT" && pwd -P)
R=${ROOT%/}   # "" for /, so "$R/usr/lib" is always an absolute path
[[ $(id -u) -eq 0 ]] || die "must run as root (it writes $ROOT)" 2

# systemctl talks to the running systemd only when installing onto this machine's own root
# and systemd is PID 1 (not in a chroot, a container build or a test root).
live_systemd() { [[ -z "$R" && -d /run/systemd/system ]] && command -v systemctl >/dev/null; }

# ── uninstall ────────────────────────────────────────────────────────────────────────────
netns_prefix() {
  if [[ -n "$NETNS_PREFIX" ]]; then printf '%s' "$NETNS_PREFIX"; return; fi
  local p=
  [[ -f "$R/etc/tether/node.env" ]] &&
    p=$(sed -n 's/^TETHER_NETNS_PREFIX=["'\'']\{0,1\}\([A-Za-z0-9_-]*\).*/\1/p' "$R/etc/tether/node.env" | tail -1)
  printf '%s' "${p:-tvn}"   # the unit's default (installer/systemd/tether-node.service)
}

# Kernel objects of the vRouter, by the names src/node/vrouter/model.ts gives them: network
# namespaces <prefix>-vn<VNI>, links tvx<VNI>/tbo<VNI> in the node's namespace, nft tables
# tether_<prefix> and tether_pm_<prefix> (family ip) there. Objects inside a network
# namespace go with it.
kernel_cleanup() {
  local prefix nsx=() ns link t
  prefix=$(netns_prefix)
  [[ "$prefix" =~ ^[A-Za-z0-9_-]{1,16}$ ]] || die "netns prefix \"$prefix\" is not 1-16 of A-Z a-z 0-9 _ -" 2
  [[ -n "$NODE_NETNS" ]] && nsx=(ip netns exec "$NODE_NETNS")
  if command -v ip >/dev/null; then
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
      if [[ "$ns" =~ ^${prefix}-vn[0-9]+$ ]]; then say "deleting network namespace $ns"; ip netns delete "$ns"; fi
    done
    for link in $("${nsx[@]}" ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}'); do
      # Deleting one end of a veth pair takes the other with it: skip a link already gone.
      if [[ "$link" =~ ^(tvx|tbo)[0-9]+$ ]] && "${nsx[@]}" ip link show "$link" >/dev/null 2>&1; then
        say "deleting link $link"; "${nsx[@]}" ip link delete "$link"
      fi
    done
  fi
  if command -v nft >/dev/null; then
    for t in "tether_${prefix//-/_}" "tether_pm_${prefix//-/_}"; do
      if "${nsx[@]}" nft list table ip "$t" >/dev/null 2>&1; then
        say "deleting nft table ip $t"; "${nsx[@]}" nft delete table ip "$t"
      fi
    done
  fi
}

uninstall() {
  [[ -f "$R/$RECORD" ]] || die "no Tether installation recorded under $ROOT ($RECORD missing)"
  if live_systemd; then
    say "stopping and disabling ${ALL_UNITS[*]}"
    systemctl stop "${ALL_UNITS[@]}" 2>/dev/null || true
  fi
  # The host's kernel belongs to the host's root: with another --root only a namespace
  # named by --node-netns (a test's, a lab's) is cleaned.
  if [[ -z "$R" || -n "$NODE_NETNS" ]]; then kernel_cleanup; fi
  say "removing the files the installer recorded"
  local line kind path files=() dirs=()
  while IFS= read -r line; do
    kind=${line%% *}; path=${line#* }
    [[ -n "$path" && "$path" != /* && "$path" != *..* ]] || die "bad line in $RECORD: \"$line\""
    case "$kind" in
      f|l) files+=("$R/$path") ;;
      d) dirs=("$R/$path" "${dirs[@]}") ;;   # deepest (last made) first
      *) die "bad line in $RECORD: \"$line\"" ;;
    esac
  done < "$R/$RECORD"
  [[ ${#files[@]} -gt 0 ]] && rm -f -- "${files[@]}"
  if [[ $KEEP_STATE -eq 0 ]]; then
    say "removing state and configuration: ${STATE_PATHS[*]} and the profile's drop-ins"
    for path in "${STATE_PATHS[@]}" "${PROFILE_FILES[@]}"; do rm -rf -- "${R:?}/$path"; done
  fi
  rm -f -- "$R/$RECORD"
  # Directories it created, only when nothing else lives in them now.
  [[ ${#dirs[@]} -gt 0 ]] && { rmdir --ignore-fail-on-non-empty -- "${dirs[@]}" 2>/dev/null || true; }
  if live_systemd; then systemctl daemon-reload; systemctl reset-failed "${ALL_UNITS[@]}" 2>/dev/null || true; fi
  [[ $KEEP_STATE -eq 0 && -z "$R" && -d /boot/grub ]] && command -v update-grub >/dev/null &&
    { say "update-grub (the profile's kernel arguments are gone at the next boot)"; update-grub >/dev/null 2>&1 || true; }
  say "Tether removed from $ROOT"
}

if [[ $MODE == uninstall ]]; then uninstall; exit 0; fi

# ── install ──────────────────────────────────────────────────────────────────────────────
SRC=$(cd "$(dirname "$(readlink -f "$0")")" && pwd -P)
[[ -f "$SRC/VERSION" && -f "$SRC/SHA256SUMS" && -f "$SRC/lib/tether.mjs" ]] ||
  die "$SRC is not an extracted release tarball (VERSION, SHA256SUMS, lib/tether.mjs)" 2
VERSION=$(cat "$SRC/VERSION")
say "Tether $VERSION from $SRC onto $ROOT"

say "checking the tarball against SHA256SUMS"
(cd "$SRC" && sha256sum --quiet --strict -c SHA256SUMS >&2) || die "the tarball's files do not match SHA256SUMS: download it again" 2

# Dependencies, in the target root: run there when it is this machine's or a chroot-able
# root, else only look for the programs.
in_root() { if [[ -z "$R" ]]; then "$@"; else chroot "$ROOT" "$@"; fi; }
find_prog() {
  local d
  for d in usr/local/bin usr/bin bin usr/sbin sbin; do [[ -x "$R/$d/$1" ]] && { printf '/%s/%s' "$d" "$1"; return 0; }; done
  return 1
}
missing=()
ABI_WANT=$(sed -n 's/^node_abi=//p' "$SRC/BUILDINFO")
if node=$(find_prog node); then
  if ver=$(in_root "$node" -p 'process.versions.node + " " + process.versions.modules' 2>/dev/null); then
    major=${ver%%.*}
    if (( major < 20 )); then missing+=("nodejs >= 20 (found node ${ver%% *} at $node)")
    elif [[ "${ver##* }" != "$ABI_WANT" && $ALLOW_ABI -eq 0 ]]; then
      missing+=("a Node.js with module ABI $ABI_WANT, the one the native addons were built for (node ${ver%% *} at $node has ABI ${ver##* }; BUILDINFO names the version)")
    fi
  else
    missing+=("a working nodejs >= 20 ($node does not run in $ROOT)")
  fi
else
  missing+=("nodejs >= 20 (no node in $ROOT)")
fi
find_prog ip >/dev/null || missing+=("iproute2 (no ip)")
find_prog nft >/dev/null || missing+=("nftables (no nft)")
if [[ ${#missing[@]} -gt 0 ]]; then
  printf 'tether install: missing on %s, nothing was changed:\n' "$ROOT" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  printf 'install them first, e.g.: apt-get install nodejs iproute2 nftables\n' >&2
  exit 2
fi
if [[ -f "$R/$RECORD" ]]; then
  die "Tether is already installed under $ROOT ($(cat "$R/$LIBDIR/VERSION" 2>/dev/null || echo '?')): run tether-uninstall --keep-state first" 2
fi

# What goes where: "SRC DEST-REL MODE" lines, checked before anything is written.
plan=()
add() { plan+=("$1"$'\t'"$2"$'\t'"$3"); }
while IFS= read -r f; do add "$SRC/lib/$f" "$LIBDIR/$f" 0644; done < <(cd "$SRC/lib" && find . -type f | sed 's#^\./##' | sort)
for f in VERSION BUILDINFO SHA256SUMS; do add "$SRC/$f" "$LIBDIR/$f" 0644; done
add "$SRC/bin/tether" "$BINDIR/tether" 0755
[[ -f "$SRC/bin/tether-cni" ]] && add "$SRC/bin/tether-cni" "$CNIDIR/tether-cni" 0755
add "$SRC/install.sh" "$SBINDIR/tether-uninstall" 0755
while IFS= read -r f; do add "$SRC/profiles/$f" "$PROFDIR/$f" 0644; done < <(cd "$SRC/profiles" && find . -type f | sed 's#^\./##' | sort)
for f in "$SRC"/doc/*.md; do add "$f" "$DOCDIR/${f##*/}" 0644; done
for u in "$SRC"/systemd/*.service; do add "$u" "$UNITDIR/${u##*/}" 0644; done
# Uninstall removes what the record lists: a file that is already there (a hand-copied
# tether, another package's) would be overwritten and then deleted, so it stops here.
taken=()
for e in "${plan[@]}"; do IFS=$'\t' read -r _ d _ <<< "$e"; [[ -e "$R/$d" || -L "$R/$d" ]] && taken+=("/$d"); done
if [[ ${#taken[@]} -gt 0 ]]; then
  printf 'tether install: these files exist already and are not from this installer, nothing was changed:\n' >&2
  printf '  - %s\n' "${taken[@]}" >&2
  exit 2
fi

# Every directory created and file written is recorded (in order) before it is made, so an
# interrupted install is still removed completely by --uninstall. Until /usr/lib/tether
# exists the lines wait in a temp file. Builtins only here: a fork costs tens of ms on a
# loaded box, and a tarball has a hundred files.
TMPREC=$(mktemp)
trap 'rm -f "$TMPREC"' EXIT
trap 'printf "tether install: failed part way; %s --uninstall --root %s removes what was installed\n" "$0" "$ROOT" >&2' ERR
REC=$TMPREC
record() { printf '%s %s\n' "$1" "$2" >> "$REC"; }
mkdir_r() { # mkdir -p that records each directory it creates
  local parts=() p= part
  IFS=/ read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    p=${p:+$p/}$part
    if [[ ! -d "$R/$p" ]]; then record d "$p"; mkdir -m 0755 "$R/$p"; fi
  done
}
put() { # put SRC DEST-REL MODE
  mkdir_r "${2%/*}"
  record f "$2"
  install -m "$3" "$1" "$R/$2"
}
link() { # link TARGET DEST-REL
  mkdir_r "${2%/*}"
  record l "$2"
  ln -sfn "$1" "$R/$2"
}
mkdir_r "$LIBDIR"
cat "$TMPREC" > "$R/$RECORD"
REC=$R/$RECORD

say "installing /$LIBDIR (bundle, native addons), /$BINDIR/tether, /$CNIDIR/tether-cni, /$SBINDIR/tether-uninstall, /$PROFDIR, /$DOCDIR, units in /$UNITDIR"
for e in "${plan[@]}"; do IFS=$'\t' read -r f d m <<< "$e"; put "$f" "$d" "$m"; done

if [[ $ENABLE -eq 1 ]]; then
  enable=("${NODE_UNITS[@]}")
  [[ $CONTROLLER -eq 1 ]] && enable+=(tether-controller.service)
  say "enabling ${enable[*]}"
  # The symlinks `systemctl enable` makes, from each unit's WantedBy=, made directly so
  # the same thing happens in a root no systemd runs in (and is recorded for uninstall).
  for u in "${enable[@]}"; do
    for target in $(sed -n 's/^WantedBy=//p' "$R/$UNITDIR/$u"); do
      link "/$UNITDIR/$u" "$WANTSDIR/$target.wants/$u"
    done
  done
fi

if live_systemd; then
  systemctl daemon-reload
  if [[ $START -eq 1 && $ENABLE -eq 1 ]]; then
    say "starting tether-firstboot.service (progress on the console and in journalctl -fu tether-firstboot)"
    systemctl start --no-block "${NODE_UNITS[@]}"
  fi
fi
say "Tether $VERSION installed onto $ROOT; remove it with tether-uninstall"
