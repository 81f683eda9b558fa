#!/usr/bin/env bash
# Installs what ferry's tests, demo and benchmarks run against, when it is missing:
# dockerd, sshd, a registry, skopeo, podman, debootstrap, busybox, pigz, zstd, cosign.
set -euo pipefail

declare -A pkg=(
  [dockerd]=docker.io [sshd]=openssh-server [skopeo]=skopeo [podman]=podman
  [docker-registry]=docker-registry [debootstrap]=debootstrap
  [pigz]=pigz [zstd]=zstd [ip]=iproute2 [jq]=jq
)
missing=()
for bin in "${!pkg[@]}"; do
  PATH=$PATH:/usr/sbin:/sbin command -v "$bin" >/dev/null || missing+=("${pkg[$bin]}")
done
[ -x /usr/bin/time ] || missing+=(time)
# test images run busybox inside containers: it must be the static build
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# cosign, for the tests of signatures carried with their images: built once from its Go
# module into /var/cache/ferry/bin (internal/testenv.Require looks there).
[ -x /var/cache/ferry/bin/cosign ] || {
  echo "building cosign" >&2
  GOBIN=/var/cache/ferry/bin go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
}
# Newer toolchains run from Debian roots, built once and cached (internal/testenv/roots.go
# starts them): Debian 13's docker 26, containerd 1.7, podman 5.4, skopeo 1.18, and
# unstable's docker 28, containerd 2.1, podman 5.8, skopeo 1.22.
for root in trixie sid; do
  bash "$(dirname "$0")/root.sh" "$root"
done
