#!/usr/bin/env bash
# Server migration with ferry: move every tagged image from the docker daemon of one host to
# the docker daemon of another, in one command, over SSH. Neither host needs anything but
# sshd and docker; nothing is written to disk on either. The images stream through this
# machine, and the new host gets only the layers it does not have yet. If the connection
# breaks, the new host is left as it was: run the script again to finish.
#
#   migrate.sh OLD NEW [ferry send flags...]
#
# OLD and NEW are [user@]host[:port], ssh config aliases, or
# ssh://[user@]host[:port]/path/to/docker.sock when docker listens somewhere else.
set -euo pipefail
FERRY=${FERRY:-ferry}
old=$1 new=$2
shift 2

echo "moving every tagged image from $old to $new"
"$FERRY" send --from "$old" --all -H "$new" "$@"
