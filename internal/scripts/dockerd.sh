# Sourced by ferry's example, demo and benchmark scripts: throwaway docker daemons.
#   start_dockerd VAR NAME  starts dockerd under $WORK/NAME and sets VAR to its DOCKER_HOST
#   stop_dockerds        stops them all and removes their state (run from an EXIT trap)
# $WORK must be set to a short directory (unix socket paths stay under ~100 bytes).

_ferry_dockerds=()

start_dockerd() {
  local var=$1 dir=$WORK/$2
  mkdir -p "$dir"
  PATH=$PATH:/usr/sbin dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/pid" \
    -H "unix://$dir/sock" --bridge=none --iptables=false >"$dir/log" 2>&1 &
  _ferry_dockerds+=("$dir")
  for _ in $(seq 120); do
    DOCKER_HOST=unix://$dir/sock docker version >/dev/null 2>&1 && { printf -v "$var" %s "unix://$dir/sock"; return; }
    sleep 0.5
  done
  echo "dockerd $2 did not start; its log:" >&2
  tail -20 "$dir/log" >&2
  return 1
}

stop_dockerds() {
  local dir
  for dir in "${_ferry_dockerds[@]}"; do
    DOCKER_HOST=unix://$dir/sock timeout 20 docker rm -f $(DOCKER_HOST=unix://$dir/sock docker ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
  done
  for dir in "${_ferry_dockerds[@]}"; do
    for _ in $(seq 40); do [ -f "$dir/pid" ] || break; sleep 0.5; done
    grep -o " $dir[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dir"
  done
}

# busybox_image DOCKER_HOST REF [PATH=CONTENT...] imports a busybox image with extra files.
busybox_image() {
  local host=$1 ref=$2 root
  shift 2
  root=$(mktemp -d)
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  for tool in sh cat ls echo; do ln -s busybox "$root/bin/$tool"; done
  local kv
  for kv in "$@"; do
    mkdir -p "$root/$(dirname "${kv%%=*}")"
    printf '%s\n' "${kv#*=}" >"$root/${kv%%=*}"
  done
  tar -C "$root" -c . | DOCKER_HOST=$host docker import --change 'CMD ["/bin/sh"]' - "$ref" >/dev/null
  rm -rf "$root"
}

# derive_image DOCKER_HOST REF BASE PATH=CONTENT builds REF from BASE with one file added.
derive_image() {
  local host=$1 ref=$2 base=$3 kv=$4 ctx
  ctx=$(mktemp -d)
  printf '%s\n' "${kv#*=}" >"$ctx/file"
  printf 'FROM %s\nCOPY file %s\n' "$base" "${kv%%=*}" >"$ctx/Dockerfile"
  DOCKER_HOST=$host DOCKER_BUILDKIT=0 docker build -q --network none -t "$ref" "$ctx" >/dev/null 2>"$ctx/log" ||
    { cat "$ctx/log" >&2; return 1; }
  rm -rf "$ctx"
}
