#!/bin/sh
# Stand-in for `tether node firstboot` while the repository has none: reads bootstrap.yaml
# from a config drive (a file system labelled TETHER or CIDATA) and enrolls the node with
# `tether node enroll`. images/build.sh installs it only when installer/systemd has no
# tether-firstboot.service. It understands top-level scalars and a `controllers:` list:
#   controllers: [ "ctl.example:7443" ]   or   controllers:\n  - ctl.example:7443
#   token: T10...        site: cell-0042
set -eu
STATE=/var/lib/tether/node
MNT=/run/tether/config-drive

say() { echo "tether-image-join: $*"; }
fail() { say "$*"; exit 1; }

[ -e "$STATE/identity.yaml" ] && { say "already enrolled ($STATE/identity.yaml)"; exit 0; }

dev=""
for label in TETHER CIDATA cidata; do
  # udev may still be settling at this point; give the drive a few seconds to appear.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    dev=$(blkid -L "$label" 2>/dev/null || true)
    [ -n "$dev" ] && break 2
    sleep 1
  done
done
[ -n "$dev" ] || fail "no config drive: attach a disk or USB stick with a file system labelled TETHER holding bootstrap.yaml"

mkdir -p "$MNT"
mountpoint -q "$MNT" || mount -o ro "$dev" "$MNT"
f="$MNT/bootstrap.yaml"
[ -f "$f" ] || fail "$dev has no bootstrap.yaml at its top level"

scalar() { sed -n "s/^$1:[[:space:]]*[\"']\{0,1\}\([^\"'#]*\)[\"']\{0,1\}[[:space:]]*\(#.*\)\{0,1\}\$/\1/p" "$f" | head -n1 | tr -d '[:space:]'; }
controller=$(sed -n 's/^controllers:[[:space:]]*\[[[:space:]]*["'\'']\{0,1\}\([^],"'\'' ]*\).*/\1/p' "$f" | head -n1)
[ -n "$controller" ] || controller=$(sed -n '/^controllers:/,/^[^[:space:]-]/s/^[[:space:]]*-[[:space:]]*["'\'']\{0,1\}\([^"'\'' #]*\).*/\1/p' "$f" | head -n1)
[ -n "$controller" ] || controller=$(scalar controller)
token=$(scalar token)
site=$(scalar site)
[ -n "$controller" ] || fail "$f: field controllers: expected a list with at least one host:port"
[ -n "$token" ] || fail "$f: field token: expected a join token (tether token create)"

tok=/run/tether/join-token
umask 077
printf '%s\n' "$token" > "$tok"
say "enrolling with $controller${site:+ (site $site)}"
set -- --controller "$controller" --token-file "$tok" --state-dir "$STATE"
[ -n "$site" ] && set -- "$@" --site "$site"
rc=0
/usr/bin/tether node enroll "$@" || rc=$?
rm -f "$tok"
umount "$MNT" 2>/dev/null || true
[ "$rc" -eq 0 ] || fail "enrollment with $controller failed (exit $rc); see the message above"
say "enrolled"
