#!/usr/bin/env bash
# Offline migration with ferry: save images on one host, carry the file across, verify it,
# load it on the other host. Where the classic flow is `docker save` → scp → `docker load`,
# this one gets a compressed, verified bundle and an error before anything is loaded when the
# file was damaged on the way.
#
#   SRC_DOCKER_HOST=… DST_DOCKER_HOST=… migrate.sh CARRY_DIR IMAGE...
#
# CARRY_DIR stands for the removable disk or the file share between the hosts.
set -euo pipefail
FERRY=${FERRY:-ferry}
carry=$1
shift

echo "saving $* on the source host"
DOCKER_HOST=$SRC_DOCKER_HOST "$FERRY" save "$@" -o "$carry/images.tar.gz" -q
(cd "$carry" && sha256sum images.tar.gz >images.tar.gz.sha256)

# … the file travels …

echo "verifying on the destination host"
(cd "$carry" && sha256sum -c --quiet images.tar.gz.sha256)
"$FERRY" verify "$carry/images.tar.gz"

echo "loading on the destination host"
DOCKER_HOST=$DST_DOCKER_HOST "$FERRY" load -i "$carry/images.tar.gz" -q
