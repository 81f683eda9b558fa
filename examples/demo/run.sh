#!/usr/bin/env bash
# ferry in one minute: two images sharing a base go into one bundle, which is listed, verified,
# loaded into ferry's default OCI store (what ferry uses when no docker daemon answers) and
# into a second docker daemon, where the image runs. Nothing is pulled from any registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRY=${FERRY:-$PWD/bin/ferry}
WORK=$(mktemp -d /tmp/ferry-demo.XXXX)
source internal/scripts/dockerd.sh
trap 'stop_dockerds; rm -rf "$WORK"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting two throwaway docker daemons (the near and the far host)"
start_dockerd near near
start_dockerd far far

say "building app:1 and app:2 on the near host, both FROM base:1 (busybox, from local files)"
busybox_image "$near" base:1 etc/motd="ferry demo base"
derive_image "$near" app:1 base:1 /marker="hello from app:1"
derive_image "$near" app:2 base:1 /marker="hello from app:2"

say "ferry save app:1 app:2 -o apps.tar.gz   (one bundle, the shared base stored once)"
DOCKER_HOST=$near "$FERRY" save app:1 app:2 -o "$WORK/apps.tar.gz" -q
ls -l "$WORK/apps.tar.gz" | awk '{print $5" bytes"}'

say "ferry ls apps.tar.gz"
"$FERRY" ls "$WORK/apps.tar.gz"

say "ferry verify apps.tar.gz"
"$FERRY" verify "$WORK/apps.tar.gz"

say "ferry load with no docker daemon: into the default OCI store"
DOCKER_HOST=unix://$WORK/no-daemon.sock XDG_DATA_HOME=$WORK/data "$FERRY" load -i "$WORK/apps.tar.gz" -q
echo "store: $WORK/data/ferry/oci ($(ls "$WORK/data/ferry/oci/blobs/sha256" | wc -l) blobs)"

say "ferry load into the far host's docker, then run app:2 there"
DOCKER_HOST=$far "$FERRY" load -i "$WORK/apps.tar.gz" -q
DOCKER_HOST=$far docker run --rm --pull=never --network none app:2 cat /marker

say "done"
