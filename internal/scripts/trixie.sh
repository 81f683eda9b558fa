#!/usr/bin/env bash
# Builds, once, the Debian 13 (trixie) root that ferry's tests run the current toolchain from
# (docker.io 26, containerd 1.7, runc, podman 5, skopeo 1.18, tini), beside the host's
# bookworm daemons. See internal/testenv/trixie.go for how the tests start them.
#
#   FERRY_TRIXIE_ROOT    where the root goes (default /var/cache/ferry/trixie)
#   FERRY_DEBIAN_MIRROR  the Debian mirror (default: the one apt uses for this host's release)
#
# Idempotent: a finished root (ROOT/.ferry-trixie names the recipe) is left alone. Two runs
# at once take turns on ROOT.lock. Atomic: the root is built in ROOT.tmp.PID and renamed into
# place when complete, so a killed build leaves no ROOT; the next run removes its leftovers.
set -euo pipefail

root=${FERRY_TRIXIE_ROOT:-/var/cache/ferry/trixie}
root=${root%/}
# Bump when the recipe below changes: a root of another recipe is rebuilt.
recipe="ferry-trixie 1: minbase + docker.io containerd runc podman skopeo tini"
packages=(docker.io containerd runc podman skopeo tini)

done_already() { [ -f "$root/.ferry-trixie" ] && [ "$(head -1 "$root/.ferry-trixie")" = "$recipe" ]; }
done_already && exit 0

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
if ! flock -n 9; then
  echo "trixie.sh: waiting for another build of $root" >&2
  flock 9
fi
done_already && exit 0

# Leftovers of killed builds (their mounts lived in mount namespaces that died with them).
for old in "$root".tmp.* "$root".old.*; do
  [ -e "$old" ] && rm -rf --one-file-system "$old"
done

mirror=${FERRY_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null |
    awk -v c="$codename" '$2 == c && $1 !~ /security/ {print $1; exit}')
fi
mirror=${mirror:-http://deb.debian.org/debian}

start=$(date +%s)
tmp=$root.tmp.$$
trap 'rm -rf --one-file-system "$tmp"' EXIT
echo "trixie.sh: building $root from $mirror (once; a few minutes)" >&2
mkdir "$tmp"
debootstrap --variant=minbase trixie "$tmp" "$mirror" >"$tmp.log" 2>&1 ||
  { tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }

# No package may start a service in the root (docker.io would start a default dockerd).
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 755 "$tmp/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$tmp/etc/apt/apt.conf.d/90ferry"

# apt runs in a mount namespace of its own: /proc and /dev inside vanish with it.
unshare --mount --propagation private sh -euc '
  mount -t proc proc "$0/proc"
  mount --rbind /dev "$0/dev" && mount --make-rslave "$0/dev"
  DEBIAN_FRONTEND=noninteractive chroot "$0" sh -euc "apt-get update -qq && apt-get install -y -qq \"\$@\" && apt-get clean" sh "$@"
' "$tmp" "${packages[@]}" >>"$tmp.log" 2>&1 ||
  { tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp.log"

{
  echo "$recipe"
  echo "built $(date -u +%FT%TZ) from $mirror in $(($(date +%s) - start)) s"
  chroot "$tmp" dpkg-query -W "${packages[@]}"
} >"$tmp/.ferry-trixie"

if [ -e "$root" ]; then # a root of another recipe
  mv "$root" "$root.old.$$"
fi
mv "$tmp" "$root"
trap - EXIT
rm -rf --one-file-system "$root.old.$$"
echo "trixie.sh: $root ready in $(($(date +%s) - start)) s" >&2
sed 1d "$root/.ferry-trixie" >&2
