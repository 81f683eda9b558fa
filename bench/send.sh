#!/usr/bin/env bash
# Benchmark `ferry send` against `docker save | ssh HOST docker load` over links shaped to
# 100 Mbit/s. Each "remote" host is a network namespace with its own sshd, reached through a
# veth pair whose host end is shaped with tc tbf (this kernel has no netem: no added delay);
# its dockerd runs on this machine and sshd reaches it through its socket. Bytes on the wire
# are read from the veth's interface counters, not from ferry's report.
#
# Measures: cold send of the ~430 MB corpus image vs the naive pipeline (bytes and wall);
# warm send (the host has the base) against the missing layer; fan-out to 3 hosts vs 1;
# the same cold comparison on an unshaped link. Needs root.
#   bench/send.sh        Env: FERRY (binary), SEND_BENCH_DIR (work dir, corpus cache), RATE.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FERRY=${FERRY:-$(pwd)/bin/ferry}
DIR=${SEND_BENCH_DIR:-/var/tmp/ferry-send-bench}
RATE=${RATE:-100mbit}
BASE=bench/base:1
IMAGE=bench/go:1
HOSTS=(1 2 3)
NETNS=ferry-sb   # namespaces ferry-sb1…3, veths fsb1…3, 10.203.N.1 here and 10.203.N.2 there
SRC=unix://$DIR/src/sock

log() { printf '>> %s\n' "$*" >&2; }

# dockerd_start NAME [tmpfs]: a throwaway dockerd under $DIR/NAME, socket $DIR/NAME/sock; with
# tmpfs, its data root is a fresh tmpfs (see README: Benchmarks).
dockerd_start() {
  local d=$DIR/$1
  mkdir -p "$d/data"
  [[ ${2:-} != tmpfs ]] || mount -t tmpfs -o size=4g,mode=0711 "ferry-sb-$1" "$d/data"
  dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" -H "unix://$d/sock" \
    --bridge=none --iptables=false >"$d/log" 2>&1 &
  for _ in $(seq 60); do docker -H "unix://$d/sock" version >/dev/null 2>&1 && return; sleep 1; done
  echo "dockerd $1 did not start: see $d/log" >&2
  return 1
}

dockerd_stop() {
  local pid
  pid=$(cat "$DIR/$1/pid" 2>/dev/null) || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--pidfile $DIR/$1/pid" && kill "$pid" || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
}

cleanup() {
  local n
  for n in "${HOSTS[@]}"; do
    [[ -f $DIR/sshd$n.pid ]] && kill "$(cat "$DIR/sshd$n.pid")" 2>/dev/null || true
    ip netns del "$NETNS$n" 2>/dev/null || true
    dockerd_stop "h$n"
  done
  dockerd_stop src
  awk -v p="$DIR/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
}

# host N: a namespace with sshd on 10.203.N.2, a veth shaped to $RATE, a dockerd.
host_start() {
  local n=$1 ns=$NETNS$1
  ip netns add "$ns"
  ip link add "fsb$n" type veth peer name eth0 netns "$ns"
  ip addr add "10.203.$n.1/24" dev "fsb$n" && ip link set "fsb$n" up
  ip -n "$ns" addr add "10.203.$n.2/24" dev eth0 && ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up
  shape "$n" "$RATE"
  rm -rf "${DIR:?}/h$n"
  dockerd_start "h$n" tmpfs
  ip netns exec "$ns" /usr/sbin/sshd -f /dev/null -h "$DIR/hostkey" -o ListenAddress="10.203.$n.2" \
    -o AuthorizedKeysFile="$DIR/id.pub" -o StrictModes=no -o UsePAM=no -o PidFile="$DIR/sshd$n.pid"
  for _ in $(seq 50); do ssh-keyscan -t ed25519 "10.203.$n.2" >>"$DIR/known_hosts" 2>/dev/null && return; sleep 0.2; done
  return 1
}

shape() {   # shape N RATE|off
  if [[ $2 == off ]]; then tc qdisc del dev "fsb$1" root 2>/dev/null || true; return; fi
  tc qdisc replace dev "fsb$1" root tbf rate "$2" burst 64kb latency 50ms
}

dest() { echo "ssh://root@10.203.$1.2$DIR/h$1/sock"; }   # dest N: how ferry names host N
wire() { cat "/sys/class/net/fsb$1/statistics/tx_bytes"; }   # bytes sent towards host N

wipe() {   # wipe N: host N's daemon holds no images
  local h="docker -H unix://$DIR/h$1/sock" ids
  ids=$($h images -aq)
  [[ -z $ids ]] || $h rmi -f $ids >/dev/null
  $h image prune -af >/dev/null
}

build_corpus() {
  local tag=ferry.send.bench=v1 ctx=$DIR/ctx
  [[ $(docker -H "$SRC" image inspect -f '{{index .Config.Labels "ferry.send.bench"}}' "$IMAGE" 2>/dev/null) == v1 ]] && return
  if [[ ! -s $DIR/rootfs.tar ]]; then
    log "debootstrap bookworm (once)"
    debootstrap --variant=minbase bookworm "$DIR/rootfs" >"$DIR/debootstrap.log" 2>&1
    tar -C "$DIR/rootfs" -cf "$DIR/rootfs.tar" . && rm -rf "$DIR/rootfs"
  fi
  docker -H "$SRC" import "$DIR/rootfs.tar" "$BASE" >/dev/null
  rm -rf "$ctx" && mkdir -p "$ctx" && cp -a "$(go env GOROOT)" "$ctx/go"
  printf '%s\n' "FROM $BASE" "COPY go /usr/local/go" "LABEL $tag" >"$ctx/Dockerfile"
  log "docker build $IMAGE"
  DOCKER_BUILDKIT=0 docker -H "$SRC" build -q --network none -t "$IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# cpu_busy: CPU time this machine has spent busy, all processes, in 1/100 s.
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# run NAME HOSTS CMD...: time CMD, count the bytes it sent to HOSTS (a space-separated list)
# and the CPU time the machine spent meanwhile (the hosts' daemons run here too).
declare -A WALL BYTES CPU
run() {
  local name=$1 hosts=$2 start end t0 t1 n c0
  shift 2
  start=0 end=0
  for n in $hosts; do start=$((start + $(wire "$n"))); done
  c0=$(cpu_busy)
  t0=$(date +%s.%N)
  "$@" >"$DIR/cmd.out" 2>"$DIR/cmd.err" || { echo "FAILED: $name" >&2; cat "$DIR/cmd.err" >&2; return 1; }
  t1=$(date +%s.%N)
  for n in $hosts; do end=$((end + $(wire "$n"))); done
  WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  CPU[$name]=$(awk -v a="$c0" -v b="$(cpu_busy)" 'BEGIN { printf "%.1f", (b - a) / 100 }')
  BYTES[$name]=$((end - start))
  log "$name: ${WALL[$name]} s, ${BYTES[$name]} bytes on the wire"
}

ferry_send() { HOME=$DIR SSH_AUTH_SOCK= DOCKER_HOST=$SRC "$FERRY" send -q -i "$DIR/id" --known-hosts "$DIR/known_hosts" "$@"; }
naive() {   # naive N: docker save | ssh host docker load
  docker -H "$SRC" save "$IMAGE" |
    ssh -i "$DIR/id" -o UserKnownHostsFile="$DIR/known_hosts" -o BatchMode=yes "root@10.203.$1.2" \
      "docker -H unix://$DIR/h$1/sock load"
}

# Floors: what no sender can beat with these daemons. The source daemon exports the whole
# image before its first byte (dockerd 20.10 builds the save in a temp dir), and the link
# carries the bytes at its rate at best; the host's load of the stream adds to that.
first_byte() { [[ $(docker -H "$SRC" save "$IMAGE" 2>/dev/null | head -c 1 | wc -c) == 1 ]]; }
link_rate() { awk -v r="$RATE" 'BEGIN { n = r + 0; if (r ~ /gbit$/) n *= 1000; printf "%.0f", n * 1e6 / 8 }'; }   # bytes/s
floor() { awk -v t="${WALL[first byte]}" -v b="${BYTES[$1]}" -v r="$(link_rate)" 'BEGIN { printf "%.1f", t + b / r }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mb() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1e6 }'; }

main() {
  [[ $(id -u) == 0 ]] || { echo "bench/send.sh needs root (network namespaces, dockerd)" >&2; exit 1; }
  [[ -x $FERRY ]] || go build -o "$FERRY" ./cmd/ferry
  mkdir -p "$DIR" /run/sshd
  cleanup
  trap cleanup EXIT
  rm -f "$DIR/known_hosts" "$DIR/hostkey" "$DIR/id"
  ssh-keygen -q -t ed25519 -N '' -f "$DIR/hostkey" && ssh-keygen -q -t ed25519 -N '' -f "$DIR/id"
  dockerd_start src
  build_corpus
  for n in "${HOSTS[@]}"; do host_start "$n"; done

  local size go_layer
  size() { docker -H "$SRC" image inspect -f '{{.Size}}' "$1"; }
  go_layer=$(($(size "$IMAGE") - $(size "$BASE")))
  wipe 1 && run "naive, cold" 1 naive 1
  wipe 1 && run "ferry send, cold" 1 ferry_send "$IMAGE" -H "$(dest 1)"
  wipe 1 && ferry_send "$BASE" -H "$(dest 1)" >/dev/null && run "ferry send, warm (host has the base)" 1 ferry_send "$IMAGE" -H "$(dest 1)"
  for n in "${HOSTS[@]}"; do wipe "$n"; done
  run "ferry send, cold, 3 hosts" "1 2 3" ferry_send "$IMAGE" -H "$(dest 1)" -H "$(dest 2)" -H "$(dest 3)"
  shape 1 off
  wipe 1 && run "naive, cold, unshaped" 1 naive 1
  wipe 1 && run "ferry send, cold, unshaped" 1 ferry_send "$IMAGE" -H "$(dest 1)"
  run "first byte" "" first_byte

  local c="ferry send, cold" n="naive, cold" w="ferry send, warm (host has the base)"
  echo
  echo "ferry send over SSH, $IMAGE ($(mb "$(size "$IMAGE")") MB), links shaped to $RATE:"
  echo
  echo "| case | wall s | MB on the wire | CPU s, whole machine |"
  echo "| --- | ---: | ---: | ---: |"
  for k in "$n" "$c" "$w" "ferry send, cold, 3 hosts" "naive, cold, unshaped" "ferry send, cold, unshaped"; do
    echo "| $k | ${WALL[$k]} | $(mb "${BYTES[$k]}") | ${CPU[$k]} |"
  done
  echo
  echo "- cold, ferry / naive: $(ratio "${BYTES[$c]}" "${BYTES[$n]}")× the bytes, $(ratio "${WALL[$c]}" "${WALL[$n]}")× the time"
  echo "- warm: $(mb "${BYTES[$w]}") MB on the wire for a missing layer of $(mb "$go_layer") MB (uncompressed);" \
    "$(ratio "${WALL[$w]}" "${WALL[$n]}")× the naive cold time"
  local f="ferry send, cold, 3 hosts" cores
  cores=$(nproc)
  echo "- fan-out: 3 hosts take $(ratio "${WALL[$f]}" "${WALL[$c]}")× the time of one. Their daemons, sshds and" \
    "unpacking run on this machine's $cores cores: the 3-host send used ${CPU[$f]} CPU s (one host: ${CPU[$c]})," \
    "so it cannot take less than $(awk -v c="${CPU[$f]}" -v n="$cores" 'BEGIN { printf "%.1f", c / n }') s here" \
    "($(ratio "$(awk -v c="${CPU[$f]}" -v n="$cores" 'BEGIN { print c / n }')" "${WALL[$c]}")× one host)"
  echo "- unshaped (veth, no tc): ferry / naive $(ratio "${WALL[ferry send, cold, unshaped]}" "${WALL[naive, cold, unshaped]}")× the time"
  echo "- floors: docker save's first byte comes after ${WALL[first byte]} s; with the bytes sent at $RATE, no send can take" \
    "less than $(floor "$c") s cold ($(ratio "$(floor "$c")" "${WALL[$n]}")× naive) or $(floor "$w") s warm ($(ratio "$(floor "$w")" "${WALL[$n]}")× naive)," \
    "before the host loads anything"
}

main "$@"
