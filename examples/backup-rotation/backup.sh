#!/usr/bin/env bash
# Nightly image backup into a ferry pool: each night's images become one bundle, stored once
# however many nights share a layer; only the last KEEP nights are kept.
#
#   DOCKER_HOST=… backup.sh POOL_DIR KEEP IMAGE...      (cron: once a night)
#
# Restore any night as a normal bundle:  ferry pool export POOL_DIR NIGHT -o restore.tar
set -euo pipefail
FERRY=${FERRY:-ferry}
pool=$1 keep=$2
shift 2
night=${NIGHT:-nightly-$(date -u +%Y%m%dT%H%M%SZ)}

[ -d "$pool" ] || "$FERRY" pool init "$pool"
"$FERRY" pool add "$pool" "$@" --name "$night" -q

# Keep the newest $keep nights: ls lists the oldest first.
"$FERRY" pool ls "$pool" | awk 'NR > 1 && $1 ~ /^nightly-/ { print $1 }' | head -n "-$keep" |
  while read -r old; do
    "$FERRY" pool rm "$pool" "$old"
  done
"$FERRY" pool gc "$pool"
"$FERRY" pool check "$pool"
"$FERRY" pool stats "$pool"
