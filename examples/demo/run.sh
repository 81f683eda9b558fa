#!/usr/bin/env bash
# ferry in one minute, the whole job:
#   1. save two images that share a base into one bundle, list it, verify it;
#   2. keep both in a pool, as two bundles: the shared base is stored once;
#   3. send one image over SSH to a second docker daemon that already holds the base: only
#      what it lacks crosses the wire; then run the image there.
# Everything runs here and is thrown away at the end: two docker daemons (the near and the
# far host) and an sshd on 127.0.0.1 in front of the far one (key login; its host key is
# verified against a known_hosts file, as ssh does). Nothing is pulled from any registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRY=${FERRY:-$PWD/bin/ferry}
WORK=$(mktemp -d /tmp/ferry-demo.XXXX)
source internal/scripts/dockerd.sh
source internal/scripts/sshd.sh
trap 'stop_sshds; stop_dockerds; rm -rf "$WORK"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$FERRY|ferry|; s|$WORK|\$WORK|g"; "$@"; }

say "starting two throwaway docker daemons (the near and the far host) and an sshd for the far one"
start_dockerd near near
start_dockerd far far
start_sshd far-ssh
far_ssh=ssh://root@127.0.0.1:$SSH_PORT${far#unix://} # ssh://USER@HOST:PORT/path/to/docker.sock
echo "far host: $far_ssh"

say "building app:1 and app:2 on the near host, both FROM base:1 (busybox, from local files)"
busybox_image "$near" base:1 etc/motd="ferry demo base"
derive_image "$near" app:1 base:1 /marker="hello from app:1"
derive_image "$near" app:2 base:1 /marker="hello from app:2"
echo "the far host got base:1 long ago:"
DOCKER_HOST=$near docker save base:1 | DOCKER_HOST=$far docker load

say "1. a bundle: two images, the shared base stored once; docker load takes it as it is"
export DOCKER_HOST=$near
run "$FERRY" save app:1 app:2 -o "$WORK/apps.tar.gz"
run "$FERRY" ls "$WORK/apps.tar.gz"
run "$FERRY" verify "$WORK/apps.tar.gz"

say "2. a pool: two bundles sharing the base; stats show what is stored once"
run "$FERRY" pool init "$WORK/pool"
run "$FERRY" pool add "$WORK/pool" app:1 --name monday
run "$FERRY" pool add "$WORK/pool" app:2 --name tuesday
run "$FERRY" pool stats "$WORK/pool"

say "3. send app:2 over SSH to the far host, which has the base: only what it lacks is sent"
run "$FERRY" send app:2 -H "$far_ssh" --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_KEY" -F none
echo "on the far host:"
DOCKER_HOST=$far docker run --rm --pull=never --network none app:2 cat /marker

say "done"
