#!/usr/bin/env bash
# Builds, once, a Debian root that ferry's tests run a newer toolchain from, beside the
# host's bookworm daemons (internal/testenv/roots.go starts them):
#
#   root.sh trixie   Debian 13: docker.io 26.1, containerd 1.7, podman 5.4, skopeo 1.18
#   root.sh sid      Debian unstable: docker.io 28.5, containerd 2.1, podman 5.8, skopeo 1.22
#
# Each also holds runc and tini. The versions are pinned (below, and in README's table): a
# mirror that serves others fails the build, naming what it serves, and nothing is cached.
#
#   FERRY_TRIXIE_ROOT, FERRY_SID_ROOT  where the root goes (default /var/cache/ferry/NAME)
#   FERRY_DEBIAN_MIRROR                the Debian mirror (default: the one apt uses here)
#
# Idempotent: a finished root (ROOT/.ferry-NAME names the recipe) is left alone. Two runs
# at once take turns on ROOT.lock. Atomic: the root is built in ROOT.tmp.PID and renamed into
# place when complete, so a killed build leaves no ROOT; the next run removes its leftovers.
set -euo pipefail

name=${1:-}
packages=(docker.io containerd runc podman skopeo tini)
apt_options=()
# pins: package → the upstream version the tests saw (Debian revisions may differ).
declare -A pins
case $name in
trixie)
  root=${FERRY_TRIXIE_ROOT:-}
  pins=([docker.io]=26.1.5 [containerd]=1.7.24 [podman]=5.4.2 [skopeo]=1.18.0)
  ;;
sid)
  root=${FERRY_SID_ROOT:-}
  pins=([docker.io]=28.5.2 [containerd]=2.1.9 [podman]=5.8.6 [skopeo]=1.22.0)
  # The mirror's unstable Release file is often past its Valid-Until date.
  apt_options=(-o Acquire::Check-Valid-Until=false)
  ;;
*)
  echo "usage: root.sh trixie|sid" >&2
  exit 2
  ;;
esac
root=${root:-/var/cache/ferry/$name}
root=${root%/}
marker=.ferry-$name
# Bump when the recipe changes: a root of another recipe is rebuilt.
recipe="ferry-$name 1: minbase + ${packages[*]}"

done_already() { [ -f "$root/$marker" ] && [ "$(head -1 "$root/$marker")" = "$recipe" ]; }
done_already && exit 0

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
if ! flock -n 9; then
  echo "root.sh: waiting for another build of $root" >&2
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
trap 'rm -rf --one-file-system "$tmp" "$tmp.log"' EXIT
fail() { tail -30 "$tmp.log" >&2; exit 1; }
echo "root.sh: building $root ($name) from $mirror (once; a few minutes)" >&2
mkdir "$tmp"
debootstrap --variant=minbase "$name" "$tmp" "$mirror" >"$tmp.log" 2>&1 || fail

# No package may start a service in the root (docker.io would start a default dockerd).
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 755 "$tmp/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$tmp/etc/apt/apt.conf.d/90ferry"

# apt runs in a mount namespace of its own: /proc and /dev inside vanish with it.
inroot() {
  unshare --mount --propagation private sh -euc '
    mount -t proc proc "$0/proc"
    mount --rbind /dev "$0/dev" && mount --make-rslave "$0/dev"
    DEBIAN_FRONTEND=noninteractive chroot "$0" "$@"' "$tmp" "$@"
}
inroot apt-get "${apt_options[@]}" update -qq >>"$tmp.log" 2>&1 || fail

# The candidates must be the pinned versions: tests and docs state facts of these.
served=$(inroot apt-cache policy "${!pins[@]}" 2>>"$tmp.log" |
  awk '/^[^ ]/ {p = $1; sub(/:$/, "", p)} /Candidate:/ {print p, $2}')
wrong=()
for p in "${!pins[@]}"; do
  v=$(awk -v p="$p" '$1 == p {print $2}' <<<"$served")
  upstream=${v#*:}
  upstream=${upstream%%[+~-]*}
  [ "$upstream" = "${pins[$p]}" ] || wrong+=("$p ${v:-(none)} (pinned ${pins[$p]})")
done
if [ ${#wrong[@]} -gt 0 ]; then
  echo "root.sh: $mirror serves other versions for $name than ferry's tests pin:" >&2
  printf '  %s\n' "${wrong[@]}" >&2
  echo "  update the pins in internal/scripts/root.sh and README's version table" >&2
  echo "  (and run the tests against them), or point FERRY_DEBIAN_MIRROR at a mirror that serves them" >&2
  exit 1
fi

inroot sh -c 'apt-get install -y -qq "$@" && apt-get clean' sh "${packages[@]}" >>"$tmp.log" 2>&1 || fail
rm -rf "$tmp"/var/lib/apt/lists/*

{
  echo "$recipe"
  echo "built $(date -u +%FT%TZ) from $mirror in $(($(date +%s) - start)) s"
  chroot "$tmp" dpkg-query -W "${packages[@]}"
} >"$tmp/$marker"

if [ -e "$root" ]; then # a root of another recipe
  mv "$root" "$root.old.$$"
fi
mv "$tmp" "$root"
rm -f "$tmp.log"
trap - EXIT
rm -rf --one-file-system "$root.old.$$"
echo "root.sh: $root ready in $(($(date +%s) - start)) s" >&2
sed 1d "$root/$marker" >&2
