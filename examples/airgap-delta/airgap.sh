#!/usr/bin/env bash
# The air-gap loop with ferry: the far side says what it has, the near side makes a delta of
# only what is new, the far side loads it. Each step is one command; the files between them
# are what crosses the gap (a USB stick, a one-way diode, a courier).
#
#   NEAR_DOCKER_HOST=… FAR_DOCKER_HOST=… airgap.sh CARRY_DIR IMAGE...
set -euo pipefail
FERRY=${FERRY:-ferry}
carry=$1
shift

echo "far side: what do we have?"
DOCKER_HOST=$FAR_DOCKER_HOST "$FERRY" inventory -o "$carry/have.json"

echo "near side: a delta of $* against it"
DOCKER_HOST=$NEAR_DOCKER_HOST "$FERRY" save "$@" --have "$carry/have.json" -o "$carry/delta.tar.gz" --checksum -q
"$FERRY" ls "$carry/delta.tar.gz"

echo "far side: verify and load"
(cd "$carry" && sha256sum -c --quiet delta.tar.gz.sha256)
DOCKER_HOST=$FAR_DOCKER_HOST "$FERRY" load "$carry/delta.tar.gz" -q
