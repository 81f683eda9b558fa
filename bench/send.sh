#!/usr/bin/env bash
# Benchmark `ferry send` against `docker save | ssh HOST docker load` over links shaped to
# 100 Mbit/s. Each "remote" host is a network namespace with its own sshd, reached through a
# veth pair whose host end is shaped with tc tbf (this kernel has no netem: no added delay);
# its dockerd runs on this machine and sshd reaches it through its socket. Bytes on the wire
# are read from the veth's interface counters, not from ferry's report.
#
# Measures: cold send of the ~430 MB corpus image vs the naive pipeline (bytes and wall);
# warm send (the host has the base) against the missing layer; fan-out to 3 hosts vs 1;
# the same cold comparison on an unshaped link. Then, for each Debian root (trixie: containerd
# 1.7 and docker 26; sid: containerd 2.1 and docker 28; see internal/scripts/root.sh), a
# containerd node (on this machine; host 1's sshd reaches its socket, so the bytes cross host
# 1's shaped link): cold send into containerd:k8s.io vs `docker save | ssh node ctr images
# import -`, warm send against the blobs the node lacked, and a send killed at 70 % of the
# cold bytes, then run again (cut_rerun, for any host kind); and a docker host from the same
# root, cold, on the classic store, where ferry sends zstd, and on the containerd image store,
# through its containerd. Then resuming on a classic docker host: an image of eight
# incompressible 40 MiB layers sent cold, then killed at 70 % of those bytes and sent again.
# Last, a fleet: eight hosts, each an OCI layout over SFTP behind a shaped link of its own,
# sent to with --jobs 1, 4 and 8, against one host; and at scale: containerd nodes behind
# links of their own, sent to, against a registry they pull from (docs/at-scale.md). Needs root.
#   bench/send.sh        Env: FERRY (binary), SEND_BENCH_DIR (work dir, corpus cache), RATE, COLD_RUNS,
#                        FERRY_TRIXIE_ROOT, FERRY_SID_ROOT (the roots: without one, none of its rows),
#                        FLEET_IMAGE (default bench/go:1), FLEET_RUNS (rounds, default 3),
#                        SEND_BENCH_ONLY=trixie or sid (that root's containerd and docker rows alone),
#                        SEND_BENCH_ONLY=resume (the classic docker resume rows alone),
#                        SEND_BENCH_ONLY=helper (the rows by content through the ferry helper alone,
#                        and one to two docker 20.10 hosts at once, host 2 started for it;
#                        HELPER_KINDS picks hosts of docker20, docker26c, containerd;
#                        HELPER_RUNS, default 3, the alternated runs of the layer-level and warm rows),
#                        CONTENT_BENCH_DIR (bench/content.sh's corpus, for the helper rows).
#                        SEND_BENCH_ONLY=fleet (the fleet rows alone),
#                        SEND_BENCH_ONLY=atscale (the at-scale rows alone; ATSCALE_NODES, default 4;
#                        ATSCALE_RUNS, default 3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FERRY=${FERRY:-$(pwd)/bin/ferry}
DIR=${SEND_BENCH_DIR:-/var/tmp/ferry-send-bench}
RATE=${RATE:-100mbit}
COLD_RUNS=${COLD_RUNS:-3}   # the cold send and the naive pipeline, each, for their medians
BASE=bench/base:1
IMAGE=bench/go:1
LAYERS=bench/layers:1   # busybox and eight layers of 40 MiB of random bytes
HOSTS=(1 2 3)
[[ -z ${SEND_BENCH_ONLY:-} ]] || HOSTS=(1)
[[ ${SEND_BENCH_ONLY:-} != fleet && ${SEND_BENCH_ONLY:-} != atscale ]] || HOSTS=()
NETNS=ferry-sb VETH=fsb NET=10.203   # namespaces ferry-sb1…3, veths fsb1…3, 10.203.N.1 here and 10.203.N.2 there
SRC=unix://$DIR/src/sock
declare -A ROOTS=([trixie]=${FERRY_TRIXIE_ROOT:-/var/cache/ferry/trixie} [sid]=${FERRY_SID_ROOT:-/var/cache/ferry/sid})
declare -A CTD_VERSION=([trixie]=1.7 [sid]=2.1) DOCKER_VERSION=([trixie]=26 [sid]=28)
ROOT=   # the root the containerd node and the docker host run from (use_root)
CTD=/tmp/ferry-sb-ctd   # the containerd node's state; short: its socket path must stay < 100 bytes
CTD_SOCK=$CTD/containerd.sock
RD=/tmp/ferry-sb-rd   # a docker host from the root, the same way

log() { printf '>> %s\n' "$*" >&2; }

# dockerd_start NAME [tmpfs]: a throwaway dockerd under $DIR/NAME, socket $DIR/NAME/sock; with
# tmpfs, its data root is a fresh tmpfs (see docs/benchmarks.md).
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
    link_stop "$n"
    dockerd_stop "h$n"
  done
  fleet_stop
  sa_stop
  dockerd_stop src
  if [[ ${SEND_BENCH_ONLY:-} != fleet && ${SEND_BENCH_ONLY:-} != atscale ]]; then   # those runs leave these alone
    ctd_stop
    rd_stop
  fi
  awk -v p="$DIR/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
}

# host N: a namespace with sshd on 10.203.N.2, a veth shaped to $RATE, a dockerd.
host_start() {
  link_start "$1"
  rm -rf "${DIR:?}/h$1"
  dockerd_start "h$1" tmpfs
  # root's home there is $DIR/homeN: what a ferry helper keeps in it stays with the benchmark.
  mkdir -p "$DIR/home$1"
  sshd_start "$1" "$DIR/home$1" /root
}

# link_start N: namespace $NETNS$N, reached through veth $VETH$N (shaped to $RATE), $NET.N.1
# here and $NET.N.2 there.
link_start() {
  local n=$1 ns=$NETNS$1
  ip netns add "$ns"
  ip link add "$VETH$n" type veth peer name eth0 netns "$ns"
  ip addr add "$NET.$n.1/24" dev "$VETH$n" && ip link set "$VETH$n" up
  ip -n "$ns" addr add "$NET.$n.2/24" dev eth0 && ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up
  shape "$n" "$RATE"
}

# sshd_start N [FROM AT]: host N's sshd on $NET.N.2, with its sftp subsystem. ip netns exec
# gives it a mount namespace of its own: with FROM and AT, it sees directory FROM at AT.
sshd_start() {
  local n=$1
  ip netns exec "$NETNS$n" sh -euc '[ -z "$1" ] || mount --bind "$1" "$2"; shift 2; exec "$@"' sh "${2:-}" "${3:-}" \
    /usr/sbin/sshd -f /dev/null -h "$DIR/hostkey" -o ListenAddress="$NET.$n.2" -o Subsystem="sftp internal-sftp" \
    -o AuthorizedKeysFile="$DIR/id.pub" -o StrictModes=no -o UsePAM=no -o PidFile="$DIR/$NETNS$n.sshd.pid"
  for _ in $(seq 50); do ssh-keyscan -t ed25519 "$NET.$n.2" >>"$DIR/known_hosts" 2>/dev/null && return; sleep 0.2; done
  return 1
}

link_stop() {   # link_stop N: host N's sshd and namespace (its veth goes with it)
  [[ -f $DIR/$NETNS$1.sshd.pid ]] && kill "$(cat "$DIR/$NETNS$1.sshd.pid")" 2>/dev/null || true
  ip netns del "$NETNS$1" 2>/dev/null || true
}

shape() {   # shape N RATE|off
  if [[ $2 == off ]]; then tc qdisc del dev "$VETH$1" root 2>/dev/null || true; return; fi
  tc qdisc replace dev "$VETH$1" root tbf rate "$2" burst 64kb latency 50ms
}

dest() { echo "ssh://root@$NET.$1.2$DIR/h$1/sock"; }   # dest N: how ferry names host N
wire() { cat "/sys/class/net/$VETH$1/statistics/tx_bytes"; }   # bytes sent towards host N

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

build_layers() {
  local ctx=$DIR/lctx i
  [[ $(docker -H "$SRC" image inspect -f '{{index .Config.Labels "ferry.send.bench"}}' "$LAYERS" 2>/dev/null) == v1 ]] && return
  rm -rf "$ctx" && mkdir -p "$ctx" && cp "$(command -v busybox)" "$ctx/busybox"
  { echo "FROM scratch"; echo "COPY busybox /bin/busybox"; } >"$ctx/Dockerfile"
  for i in 1 2 3 4 5 6 7 8; do
    head -c $((40 << 20)) /dev/urandom >"$ctx/l$i"
    echo "COPY l$i /l$i" >>"$ctx/Dockerfile"
  done
  echo "LABEL ferry.send.bench=v1" >>"$ctx/Dockerfile"
  log "docker build $LAYERS"
  DOCKER_BUILDKIT=0 docker -H "$SRC" build -q --network none -t "$LAYERS" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# use_root NAME: the containerd node and docker host run from root NAME; false (and a log
# line) when it is not built.
use_root() {
  ROOT=${ROOTS[$1]}
  [[ -f $ROOT/.ferry-$1 ]] || { log "no $1 root at $ROOT: no containerd ${CTD_VERSION[$1]} or docker ${DOCKER_VERSION[$1]} rows"; return 1; }
}

# root_start DIR CMD...: CMD from the root, in a mount namespace of its own: the root
# bind-mounted read-only onto itself, /proc, /sys and /dev, tmpfs on /run, this machine's /tmp
# at the same path (DIR, under /tmp, holds its sockets, seen here, so host 1's sshd reaches
# them), and tmpfs on DIR/root and DIR/state that go with it (a restart is a wipe), mounted
# where the root sees them (under its /tmp, not this machine's). Its pid
# (CMD's) goes to DIR/pid, its output to DIR/log.
root_start() {
  local d=$1
  shift
  unshare --mount --propagation private sh -euc '
    r=$0 d=$1
    shift
    mount --bind "$r" "$r"
    mount -o remount,bind,ro "$r"
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --make-rslave "$r/sys"
    mount --rbind /dev "$r/dev"
    mount --make-rslave "$r/dev"
    mount -t tmpfs -o mode=755 tmpfs "$r/run"
    mount --bind /tmp "$r/tmp"
    mount -t tmpfs -o size=4g tmpfs "$r$d/root"
    mount -t tmpfs tmpfs "$r$d/state"
    exec chroot "$r" "$@"
  ' "$ROOT" "$d" "$@" >"$d/log" 2>&1 &
  echo $! >"$d/pid"
}

root_stop() {   # root_stop DIR: stop what root_start started there, remove DIR
  local pid
  pid=$(cat "$1/pid" 2>/dev/null) || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1/config" && kill "$pid" || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  rm -rf "$1"
}

# ctd_start: the containerd node, CRI disabled.
ctd_start() {
  rm -rf "$CTD" && mkdir -p "$CTD/root" "$CTD/state"
  printf '%s\n' 'version = 2' "root = \"$CTD/root\"" "state = \"$CTD/state\"" \
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]' '[grpc]' "  address = \"$CTD_SOCK\"" \
    '[ttrpc]' "  address = \"$CTD_SOCK.ttrpc\"" >"$CTD/config.toml"
  root_start "$CTD" containerd --config "$CTD/config.toml"
  for _ in $(seq 60); do ctr_node version >/dev/null 2>&1 && return; sleep 0.5; done
  echo "containerd did not start: see $CTD/log" >&2
  return 1
}

ctd_stop() { root_stop "$CTD"; }

# rd_start [containerd]: the root's dockerd (classic store, overlay2), its data root on tmpfs;
# it starts its own containerd. With "containerd", on the containerd image store, its exec
# root beside its socket and named docker (as /var/run/docker is beside /var/run/docker.sock),
# where this machine and host 1's sshd see it: ferry finds docker 26's containerd there
# (docker 28 says where in /info).
rd_start() {
  local config='{}' exec=$RD/state
  if [[ ${1:-} == containerd ]]; then config='{"features": {"containerd-snapshotter": true}}' exec=$RD/docker; fi
  rm -rf "$RD" && mkdir -p "$RD/root" "$RD/state"
  echo "$config" >"$RD/config.json"
  root_start "$RD" dockerd --config-file "$RD/config.json" --data-root "$RD/root" --exec-root "$exec" \
    --pidfile "$RD/state/pid" -H "unix://$RD/docker.sock" --bridge=none --iptables=false --ip6tables=false
  for _ in $(seq 90); do docker -H "unix://$RD/docker.sock" version >/dev/null 2>&1 && return; sleep 0.5; done
  echo "dockerd did not start: see $RD/log" >&2
  return 1
}

rd_stop() { root_stop "$RD"; }

ctd_wipe() { ctd_stop && ctd_start; }   # the node holds nothing

# ctr_cmd: the node's ctr, in its containerd's mount namespace and root, as a command line:
# what the naive pipeline runs through host 1's sshd.
ctr_cmd() { echo "nsenter --target $(cat "$CTD/pid") --mount --root --wd=/ -- ctr --address $CTD_SOCK"; }
ctr_node() { $(ctr_cmd) "$@"; }
ctd_dest() { echo "ssh://root@10.203.1.2$CTD_SOCK"; }   # the node, as ferry names it
naive_ctr() {   # docker save | ssh node ctr -n k8s.io images import -
  docker -H "$SRC" save "$IMAGE" |
    ssh -i "$DIR/id" -o UserKnownHostsFile="$DIR/known_hosts" -o BatchMode=yes root@10.203.1.2 \
      "$(ctr_cmd) -n k8s.io images import -"
}
ctd_blobs() { ctr_node -n k8s.io content ls -q | sort; }   # digests of the node's blobs
ctd_size() {   # ctd_size DIGEST...: their bytes, read back (ctr content ls rounds them)
  local d n=0
  for d in "$@"; do n=$((n + $(ctr_node -n k8s.io content get "$d" | wc -c))); done
  echo "$n"
}

# cut_rerun NAME N FULL ARGS...: ferry send ARGS (a destination on host N among them) in the
# background, killed with SIGKILL once host N's link has carried 70 % of FULL bytes (what
# the cold send took); then the same send again, timed and counted as run does, under NAME.
# CUT[NAME] is what the killed send had moved. For any host kind ferry resumes to.
declare -A CUT
cut_rerun() {
  local name=$1 n=$2 full=$3 start pid
  shift 3
  start=$(wire "$n")
  HOME=$DIR SSH_AUTH_SOCK= DOCKER_HOST=$SRC "$FERRY" send -q -i "$DIR/id" --known-hosts "$DIR/known_hosts" "$@" >/dev/null 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if (($(wire "$n") - start >= full * 7 / 10)); then kill -9 "$pid"; break; fi
    sleep 0.02
  done
  if wait "$pid" 2>/dev/null; then echo "cut_rerun $name: the send ended before 70 %" >&2; return 1; fi
  CUT[$name]=$(($(wire "$n") - start))
  run "$name" "$n" ferry_send "$@"
}

containerd_rows() {   # containerd_rows ROOT
  use_root "$1" || return 0
  local v=${CTD_VERSION[$1]}
  local cold="ferry send → containerd $v, cold" naive="docker save \\| ssh node ctr images import (containerd $v), cold"
  local warm="ferry send → containerd $v, warm (node has the base)" cut="ferry send → containerd $v, re-run after a kill at 70 %"
  local to=(-H "$(ctd_dest)" --to containerd:k8s.io) before missing payload
  shape 1 "$RATE"
  ctd_wipe && run "$naive" 1 naive_ctr
  ctd_wipe && run "$cold" 1 ferry_send "$IMAGE" "${to[@]}"
  ctd_wipe && ferry_send "$BASE" "${to[@]}" >/dev/null
  before=$(ctd_blobs)
  run "$warm" 1 ferry_json "$IMAGE" "${to[@]}"
  payload=$(grep '"summary":"sent to ' "$DIR/cmd.err" | grep -o '"bytes":[0-9]*' | cut -d: -f2)
  # shellcheck disable=SC2046
  missing=$(ctd_size $(comm -13 <(echo "$before") <(ctd_blobs)))
  ctd_wipe && cut_rerun "$cut" 1 "${BYTES[$cold]}" "$IMAGE" "${to[@]}"
  ctr_node -n k8s.io images ls -q | grep -qx "docker.io/$IMAGE" || { echo "the re-run did not name $IMAGE" >&2; return 1; }
  ctd_stop

  echo
  echo "ferry send into containerd $v (namespace k8s.io) over SSH, $IMAGE, link shaped to $RATE:"
  echo
  table "$naive" "$cold" "$warm" "$cut"
  echo
  echo "- cold, ferry / ctr import: $(ratio "${BYTES[$cold]}" "${BYTES[$naive]}")× the bytes, $(ratio "${WALL[$cold]}" "${WALL[$naive]}")× the time"
  echo "- warm: ferry sent $payload bytes for $missing bytes of blobs the node lacked" \
    "(target ≤ missing + 64 KiB: $(awk -v b="$payload" -v m="$missing" 'BEGIN { print (b <= m + 65536) ? "met" : "missed" }'));" \
    "on the wire (SSH, TCP, IP) $(mb "${BYTES[$warm]}") MB = $(ratio "${BYTES[$warm]}" "$missing")× the missing blobs;" \
    "$(ratio "${WALL[$warm]}" "${WALL[$naive]}")× the ctr import time"
  echo "- cut: killed after $(mb "${CUT[$cut]}") MB ($(ratio "${CUT[$cut]}" "${BYTES[$cold]}")× the cold bytes); the re-run moved" \
    "$(mb "${BYTES[$cut]}") MB = $(ratio "${BYTES[$cut]}" "${BYTES[$cold]}")× the cold send's bytes" \
    "(target ≤ 0.35: $(awk -v b="${BYTES[$cut]}" -v c="${BYTES[$cold]}" 'BEGIN { print (b <= 0.35 * c) ? "met" : "missed" }'))"
  echo "- floor: with the cold send's bytes at $RATE, no cold send takes less than" \
    "$(floor "$cold") s ($(ratio "$(floor "$cold")" "${WALL[$naive]}")× ctr import)"
}

# docker_rows ROOT: the root's docker host behind host 1's shaped link, cold, against the
# naive pipeline: on the classic store, where ferry compresses the stream with zstd for docker
# 23 and later; on the containerd image store, where ferry sends through the daemon's
# containerd (layers gzip-compressed, as into any containerd).
docker_rows() {
  use_root "$1" || return 0
  local v=${DOCKER_VERSION[$1]}
  local naive="docker save \\| ssh host docker load (docker $v), cold" cold="ferry send → docker $v, cold (zstd)"
  local cnaive="docker save \\| ssh host docker load (docker $v containerd store), cold"
  local ccold="ferry send → docker $v containerd store (via its containerd), cold"
  shape 1 "$RATE"
  rd_start
  run "$naive" 1 naive_rd
  rd_stop && rd_start
  run "$cold" 1 ferry_send "$IMAGE" -H "ssh://root@10.203.1.2$RD/docker.sock"
  docker -H "unix://$RD/docker.sock" image inspect "$IMAGE" >/dev/null
  rd_stop && rd_start containerd
  run "$cnaive" 1 naive_rd
  rd_stop && rd_start containerd
  run "$ccold" 1 ferry_send "$IMAGE" -H "ssh://root@10.203.1.2$RD/docker.sock"
  docker -H "unix://$RD/docker.sock" image inspect "$IMAGE" >/dev/null
  ! grep -q 'cannot use' "$DIR/cmd.err" || log "the send to the containerd store did not go through its containerd: $(cat "$DIR/cmd.err")"
  rd_stop

  echo
  echo "ferry send to docker $v over SSH, $IMAGE, link shaped to $RATE:"
  echo
  table "$naive" "$cold" "$cnaive" "$ccold"
  echo
  echo "- classic, cold, ferry (zstd) / naive: $(ratio "${BYTES[$cold]}" "${BYTES[$naive]}")× the bytes, $(ratio "${WALL[$cold]}" "${WALL[$naive]}")× the time;" \
    "floor $(floor "$cold") s ($(ratio "$(floor "$cold")" "${WALL[$naive]}")× naive)"
  echo "- containerd store, cold, ferry (via containerd) / naive: $(ratio "${BYTES[$ccold]}" "${BYTES[$cnaive]}")× the bytes," \
    "$(ratio "${WALL[$ccold]}" "${WALL[$cnaive]}")× the time; floor $(floor "$ccold") s ($(ratio "$(floor "$ccold")" "${WALL[$cnaive]}")× naive)"
}
naive_rd() {
  docker -H "$SRC" save "$IMAGE" |
    ssh -i "$DIR/id" -o UserKnownHostsFile="$DIR/known_hosts" -o BatchMode=yes root@10.203.1.2 "docker -H unix://$RD/docker.sock load"
}

# resume_rows: host 1 (docker 20.10, classic store) gets the eight-layer image cold, then again
# with the send killed at 70 % of the cold bytes and run once more: the re-run should move
# no more than the layers the killed send had not loaded (target ≤ 0.40× the cold bytes).
resume_rows() {
  local cold="ferry send, 8 × 40 MiB, cold" cut="ferry send, 8 × 40 MiB, re-run after a kill at 70 %" h="docker -H unix://$DIR/h1/sock"
  build_layers
  shape 1 "$RATE"
  wipe 1 && run "$cold" 1 ferry_send "$LAYERS" -H "$(dest 1)"
  wipe 1 && cut_rerun "$cut" 1 "${BYTES[$cold]}" "$LAYERS" -H "$(dest 1)"
  $h run --rm --pull=never --network none "$LAYERS" /bin/busybox true
  [[ -z $($h images -aq --filter dangling=true) ]] || { echo "untagged images left after the re-run" >&2; return 1; }

  echo
  echo "ferry send resuming on docker 20.10 (classic store) over SSH, $LAYERS (8 × 40 MiB, incompressible), link shaped to $RATE:"
  echo
  table "$cold" "$cut"
  echo
  echo "- cut: killed after $(mb "${CUT[$cut]}") MB ($(ratio "${CUT[$cut]}" "${BYTES[$cold]}")× the cold bytes); the re-run moved" \
    "$(mb "${BYTES[$cut]}") MB = $(ratio "${BYTES[$cut]}" "${BYTES[$cold]}")× the cold send's bytes" \
    "(target ≤ 0.40: $(awk -v b="${BYTES[$cut]}" -v c="${BYTES[$cold]}" 'BEGIN { print (b <= 0.40 * c) ? "met" : "missed" }'));" \
    "the image runs and no untagged image is left"
}

# Sends by content through the ferry helper, over host 1's shaped link: the rebuilt Debian set
# of bench/content.sh (its corpus, made once: every layer a new digest, little new content)
# sent to a host holding the old set, for docker 20.10 (classic store, host 1's daemon), and,
# from the trixie root, docker 26 on the containerd image store and containerd 1.7 (k8s.io).
# For each: the first send through the helper (its copy, and the host indexing the old set);
# the same send again; then, alternated HELPER_RUNS times for their medians, the layer-level
# send (--helper never) and a send to the host holding the old set again, its helper and index
# there already. Bytes both ways: towards the host (tx) and back (rx: the host's content index).
CONTENT_DIR=${CONTENT_BENCH_DIR:-/var/tmp/ferry-content-bench}
HELPER_IMAGE=debian/app:1
rx() { cat "/sys/class/net/fsb$1/statistics/rx_bytes"; }
helper_send() { HOME=$DIR SSH_AUTH_SOCK= DOCKER_HOST=$SRC "$FERRY" send --progress=json -i "$DIR/id" --known-hosts "$DIR/known_hosts" "$@"; }

# helper_reset KIND: the host of KIND holds the old set alone (loaded on this machine, not
# over the link); it prints the destination and store arguments of a send to it.
helper_reset() {
  case $1 in
    docker20)
      wipe 1
      DOCKER_HOST=unix://$DIR/h1/sock "$FERRY" load -q -i "$CONTENT_DIR/old.tar" >/dev/null
      echo "-H $(dest 1)"
      ;;
    docker26c)
      rd_stop && rd_start containerd
      DOCKER_HOST=unix://$RD/docker.sock "$FERRY" load -q -i "$CONTENT_DIR/old.tar" >/dev/null
      echo "-H ssh://root@10.203.1.2$RD/docker.sock"
      ;;
    containerd)
      ctd_wipe
      CONTAINERD_ADDRESS=$CTD_SOCK "$FERRY" load -q -i "$CONTENT_DIR/old.tar" --to containerd:k8s.io >/dev/null
      echo "-H $(ctd_dest) --to containerd:k8s.io"
      ;;
  esac
}

# helper_load KIND: ferry load of the rebuilt set into the host of KIND, on the host itself.
helper_load() {
  case $1 in
    docker20) DOCKER_HOST=unix://$DIR/h1/sock "$FERRY" load -q -i "$CONTENT_DIR/rebuilt.tar" ;;
    docker26c) DOCKER_HOST=unix://$RD/docker.sock "$FERRY" load -q -i "$CONTENT_DIR/rebuilt.tar" ;;
    containerd) CONTAINERD_ADDRESS=$CTD_SOCK "$FERRY" load -q -i "$CONTENT_DIR/rebuilt.tar" --to containerd:k8s.io ;;
  esac
}

# helper_run NAME ARGS...: run NAME, a send of the rebuilt set, counting the bytes back too;
# SENT[NAME] is what ferry says it sent (the content delta, or the layers).
declare -A RX SENT
helper_run() {
  local name=$1 r0
  shift
  r0=$(rx 1)
  run "$name" 1 helper_send "$HELPER_IMAGE" "$@"
  RX[$name]=$(($(rx 1) - r0))
  SENT[$name]=$(grep '"event":"done"' "$DIR/cmd.err" | grep -v '"action":"reading' | grep -o '"bytes":[0-9]*' | cut -d: -f2)
}

helper_rows() {
  [[ -s $CONTENT_DIR/old.tar && -s $CONTENT_DIR/rebuilt.tar ]] || CONTENT_BENCH_DIR=$CONTENT_DIR FERRY=$FERRY bash bench/content.sh corpus
  DOCKER_HOST=$SRC "$FERRY" load -q -i "$CONTENT_DIR/rebuilt.tar" >/dev/null
  shape 1 "$RATE"
  local kind label layers first again warm floor to copy
  copy=$(stat -c %s "$FERRY")
  for kind in ${HELPER_KINDS:-docker20 docker26c containerd}; do
    case $kind in
      docker20) label="docker 20.10" ;;
      docker26c) use_root trixie || continue; label="docker 26 containerd store" ;;
      containerd) use_root trixie || continue; label="containerd 1.7 k8s.io" ;;
    esac
    layers="$label: layers (--helper never)" first="$label: by content, first visit (helper copied, host indexed)"
    again="$label: by content, the same send again" warm="$label: by content, old set again, helper and index there"
    floor="$label: ferry load of the rebuilt set on the host itself (no link)"
    rm -rf "$DIR/home1/.cache/ferry"
    # shellcheck disable=SC2207
    to=($(helper_reset "$kind"))
    helper_run "$first" "${to[@]}"
    grep -q 'by content' "$DIR/cmd.out" || { echo "$first: not sent by content" >&2; cat "$DIR/cmd.out" "$DIR/cmd.err" >&2; return 1; }
    helper_run "$again" "${to[@]}"
    local i runs=${HELPER_RUNS:-3}
    for i in $(seq "$runs"); do   # alternated: the machine's drift touches both alike
      to=($(helper_reset "$kind"))
      helper_run "$layers #$i" --helper never "${to[@]}"
      to=($(helper_reset "$kind"))
      helper_run "$warm #$i" "${to[@]}"
    done
    median "$layers" "$runs"
    median "$warm" "$runs"
    helper_reset "$kind" >/dev/null
    run "$floor" "" helper_load "$kind"
    [[ $kind != docker26c ]] || rd_stop
    [[ $kind != containerd ]] || ctd_stop
    local both="$label: by content to hosts 1 and 2 at once, helper and index there"
    if [[ $kind == docker20 ]]; then
      local started=
      if [[ " ${HOSTS[*]} " != *" 2 "* ]]; then   # only for this row: idle, it would weigh on the others
        host_start 2
        HOSTS+=(2) started=1
      fi
      shape 2 "$RATE"
      rm -rf "$DIR/home2/.cache/ferry"
      two_reset() { helper_reset docker20 >/dev/null; wipe 2; DOCKER_HOST=unix://$DIR/h2/sock "$FERRY" load -q -i "$CONTENT_DIR/old.tar" >/dev/null; }
      two_reset
      helper_send "$HELPER_IMAGE" -H "$(dest 1)" -H "$(dest 2)" >/dev/null 2>&1 # host 2's first visit
      two_reset
      run "$both" "1 2" helper_send "$HELPER_IMAGE" -H "$(dest 1)" -H "$(dest 2)"
      (($(grep -c 'by content' "$DIR/cmd.out") >= 2)) || { echo "$both: not both by content" >&2; cat "$DIR/cmd.out" >&2; return 1; }
      if [[ -n $started ]]; then
        link_stop 2
        dockerd_stop h2
        HOSTS=(1)
      fi
    fi

    echo
    echo "ferry send by content, $label, $HELPER_IMAGE rebuilt ($(mb "$(stat -c %s "$CONTENT_DIR/rebuilt.tar")") MB of layers), link shaped to $RATE:"
    echo
    echo "| case | wall s | MB to the host | MB back | CPU s, whole machine |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    local k
    for k in "$layers" "$first" "$again" "$warm"; do
      echo "| $k | ${WALL[$k]} | $(mb "${BYTES[$k]}") | $(mb "${RX[$k]}") | ${CPU[$k]} |"
    done
    echo "| $floor | ${WALL[$floor]} | | | ${CPU[$floor]} |"
    [[ -z ${WALL[$both]:-} ]] || echo "| $both | ${WALL[$both]} | $(mb "${BYTES[$both]}") | | ${CPU[$both]} |"
    echo
    echo "- bytes: with the helper and index there, $(mb "${BYTES[$warm]}") MB towards the host for a content delta of" \
      "$(mb "${SENT[$warm]}") MB = $(ratio "${BYTES[$warm]}" "${SENT[$warm]}")× (target ≤ 1.3), and $(mb "${RX[$warm]}") MB back;" \
      "the first visit adds the helper's copy, $(mb "$((BYTES[$first] - BYTES[$warm]))") MB on the wire for its $(mb "$copy") MB," \
      "and the host's index"
    echo "- wall, against the layer-level send: $(ratio "${WALL[$warm]}" "${WALL[$layers]}")× with the helper and index there," \
      "$(ratio "${WALL[$first]}" "${WALL[$layers]}")× on the first visit (target ≤ 0.4; medians of $runs alternated runs:" \
      "layers ${RUNS[$layers]}s, by content ${RUNS[$warm]}s); the host's own load of the rebuilt set, with no link, takes" \
      "$(ratio "${WALL[$floor]}" "${WALL[$layers]}")×"
    echo "- the same send again: $(awk -v b="$((BYTES[$again] + RX[$again]))" 'BEGIN { printf "%.1f", b / 1024 }') KiB both ways" \
      "(target ≤ 64 KiB: $(awk -v b="$((BYTES[$again] + RX[$again]))" 'BEGIN { print (b <= 65536) ? "met" : "missed" }'))"
  done
}

# fleet_rows: $FLEET_IMAGE to eight hosts at once with --jobs 1, 4 and 8, against one host,
# $FLEET_RUNS rounds alternated (medians). Each host is an OCI layout over SFTP (--to oci:DIR
# on its sshd), behind a link of its own shaped to $RATE: namespaces ferry-sf1…8, veths
# fsf1…8, 10.204.N. Eight dockerds unpacking on this machine's two cores would measure the
# cores (the 3-host row above already does); an sshd writing files costs little, so the rows
# measure ferry reading once and feeding eight links. Every host's layout lives in a tmpfs,
# $DIR/fleet/hN, which its sshd (a mount namespace of its own) sees at $DIR/fleet/at.
FLEET=(1 2 3 4 5 6 7 8)
FLEET_IMAGE=${FLEET_IMAGE:-$IMAGE}
FLEET_RUNS=${FLEET_RUNS:-3}
fleet_rows() {
  local NETNS=ferry-sf VETH=fsf NET=10.204   # what link_start, shape, wire… name, here
  local f=$DIR/fleet n i j one="one host" all=() load0
  local to=(--to "oci:$f/at/oci")
  mkdir -p "$f" && mount -t tmpfs -o size=8g,mode=0755 ferry-sf "$f"
  mkdir -p "$f/at"
  for n in "${FLEET[@]}"; do
    mkdir -p "$f/h$n" && link_start "$n" && sshd_start "$n" "$f/h$n" "$f/at"
    echo "root@$NET.$n.2"
  done >"$f/hosts"
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  for i in $(seq "$FLEET_RUNS"); do   # alternated, as the cold rows
    fleet_wipe && run "$one #$i" 1 ferry_send "$FLEET_IMAGE" -H "root@$NET.1.2" "${to[@]}"
    fleet_check 1
    for j in 1 4 8; do
      fleet_wipe && run "8 hosts, --jobs $j #$i" "${FLEET[*]}" ferry_send "$FLEET_IMAGE" -H "@$f/hosts" --jobs "$j" "${to[@]}"
      fleet_check "${FLEET[@]}"
    done
  done
  median "$one" "$FLEET_RUNS"
  for j in 1 4 8; do median "8 hosts, --jobs $j" "$FLEET_RUNS" && all+=("8 hosts, --jobs $j"); done
  fleet_stop

  echo
  echo "ferry send to 8 hosts, $FLEET_IMAGE into oci:DIR over SFTP, each host's link shaped to $RATE" \
    "(medians of $FLEET_RUNS rounds, alternated; load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)):"
  echo
  table "$one" "${all[@]}"
  echo
  echo "- one host: ${RUNS[$one]} s"
  for j in 1 4 8; do
    local k="8 hosts, --jobs $j"
    echo "- $k: $(ratio "${WALL[$k]}" "${WALL[$one]}")× one host's time (links of their own: $(((8 + j - 1) / j))× at best)," \
      "$(ratio "${BYTES[$k]}" "${BYTES[$one]}")× its bytes, ${CPU[$k]} CPU s (one host ${CPU[$one]}); runs ${RUNS[$k]} s"
  done
}

fleet_wipe() { rm -rf "$DIR"/fleet/h*/oci; }   # no host holds anything

fleet_check() {   # fleet_check N...: hosts N hold the image (a layout naming it)
  local n
  for n in "$@"; do
    grep -q "\"org.opencontainers.image.ref.name\":\"[^\"]*$FLEET_IMAGE\"" "$DIR/fleet/h$n/oci/index.json" ||
      { echo "host $n of the fleet does not hold $FLEET_IMAGE" >&2; return 1; }
  done
}

fleet_stop() {
  local NETNS=ferry-sf n
  for n in "${FLEET[@]}"; do link_stop "$n"; done
}

# atscale_rows: what docs/at-scale.md weighs. $FLEET_IMAGE, as a bundle carried into a gap, to
# $ATSCALE_NODES containerd nodes (containerd from the trixie root, CRI disabled, namespace
# k8s.io), each behind a link of its own shaped to $RATE (namespaces ferry-sa1…, veths fsa1…,
# 10.205.N): ferry send to every node's containerd, against ferry load into a registry
# (distribution 2.8, docker-registry, on 127.0.0.1) then every node pulling from it at once
# (ctr images pull: it fetches and unpacks, the work a kubelet's pull has containerd do). The
# nodes reach the registry's storage through a read-only docker-registry on their link's
# address here (10.205.N.1:5000), so their pulls cross their links. The peer is one node sent to alone
# (what seeding one node of a k3s/RKE2 cluster for its embedded mirror costs). $ATSCALE_RUNS
# rounds, alternated (medians).
ATSCALE_NODES=${ATSCALE_NODES:-4}
ATSCALE_RUNS=${ATSCALE_RUNS:-3}
SA=/tmp/ferry-sa   # node N's containerd in $SA/nN: short, for its socket path
atscale_rows() {
  use_root trixie || return 0
  local NETNS=ferry-sa VETH=fsa NET=10.205   # what link_start, shape, wire… name, here
  local a=$DIR/atscale n i nodes=() one="ferry send → 1 node" send reg port
  nodes=($(seq "$ATSCALE_NODES"))
  send="ferry send → $ATSCALE_NODES nodes" reg="ferry load → registry, $ATSCALE_NODES nodes pull"
  rm -rf "$a" && mkdir -p "$a"
  log "ferry save $FLEET_IMAGE (the bundle carried into the gap)"
  HOME=$DIR DOCKER_HOST=$SRC "$FERRY" save -q "$FLEET_IMAGE" -o "$a/bundle.tar"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  REG=127.0.0.1:$port
  for n in "${nodes[@]}"; do
    link_start "$n" && sshd_start "$n"
    echo "ssh://root@$NET.$n.2$SA/n$n/containerd.sock"
  done >"$a/nodes"
  for i in $(seq "$ATSCALE_RUNS"); do   # alternated, as the cold rows
    sa_wipe && run "$one #$i" 1 ferry_send "$a/bundle.tar" -H "$(head -1 "$a/nodes")" --to containerd:k8s.io
    sa_check 1
    sa_wipe && run "$send #$i" "${nodes[*]}" ferry_send "$a/bundle.tar" -H "@$a/nodes" --to containerd:k8s.io
    sa_check "${nodes[@]}"
    sa_wipe && run "$reg #$i" "${nodes[*]}" sa_registry_path "$a/bundle.tar"
    sa_check "${nodes[@]}"
    WALL[load #$i]=$(cat "$a/load.wall") CPU[load #$i]=$(cat "$a/load.cpu") BYTES[load #$i]=0
  done
  median "$one" "$ATSCALE_RUNS"
  median "$send" "$ATSCALE_RUNS"
  median "$reg" "$ATSCALE_RUNS"
  median "load" "$ATSCALE_RUNS"
  sa_stop

  echo
  echo "at scale: $FLEET_IMAGE as a bundle, to $ATSCALE_NODES containerd ${CTD_VERSION[trixie]} nodes (k8s.io), each behind a link of" \
    "its own shaped to $RATE (medians of $ATSCALE_RUNS rounds, alternated):"
  echo
  table "$one" "$send" "$reg"
  echo
  echo "- one node: ${RUNS[$one]} s"
  echo "- $send: $(ratio "${WALL[$send]}" "${WALL[$one]}")× one node's time, $(ratio "${BYTES[$send]}" "${BYTES[$one]}")× its bytes," \
    "$(ratio "${CPU[$send]}" "${CPU[$one]}")× its CPU; runs ${RUNS[$send]} s"
  echo "- $reg: $(ratio "${WALL[$reg]}" "${WALL[$one]}")× one node's time ($(ratio "${WALL[$reg]}" "${WALL[$send]}")× the send's)," \
    "$(ratio "${BYTES[$reg]}" "${BYTES[$one]}")× its bytes, $(ratio "${CPU[$reg]}" "${CPU[$one]}")× its CPU; of which the load into" \
    "the registry $(ratio "${WALL[load]}" "${WALL[$one]}")× one node's time; runs ${RUNS[$reg]} s (loads ${RUNS[load]} s)"
}

# sa_registry_path BUNDLE: ferry load BUNDLE into the registry on 127.0.0.1, then every node
# pulls the image at once; the load's wall and CPU time go to $DIR/atscale/load.wall and .cpu.
sa_registry_path() {
  local a=$DIR/atscale n t0 c0 pids=()
  t0=$(date +%s.%N) c0=$(cpu_busy)
  HOME=$DIR "$FERRY" load -q -i "$1" --to "registry:$REG/mirror"
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }' >"$a/load.wall"
  awk -v a="$c0" -v b="$(cpu_busy)" 'BEGIN { printf "%.1f", (b - a) / 100 }' >"$a/load.cpu"
  for n in $(seq "$ATSCALE_NODES"); do
    sa_ctr "$n" ip netns exec "$NETNS$n" -- images pull --plain-http "$NET.$n.1:5000/mirror/$FLEET_IMAGE" >"$a/pull$n.log" 2>&1 &
    pids+=($!)
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || { echo "node $((n + 1)) did not pull: $(tail -3 "$a/pull$((n + 1)).log")" >&2; return 1; }; done
}

# sa_ctr N [PREFIX... --] ARGS...: ctr -n k8s.io on node N's containerd, in its mount
# namespace and root, after PREFIX (ip netns exec NS, for a pull over the node's link).
sa_ctr() {
  local n=$1 pre=()
  shift
  if [[ ${1:-} == ip ]]; then while [[ $1 != -- ]]; do pre+=("$1"); shift; done; shift; fi
  "${pre[@]}" nsenter --target "$(cat "$SA/n$n/pid")" --mount --root --wd=/ -- ctr --address "$SA/n$n/containerd.sock" -n k8s.io "$@"
}

# sa_wipe: every node's containerd restarted empty, the registry emptied and restarted: one
# docker-registry on $REG (ferry loads there), one read-only on each node link's address.
sa_wipe() {
  local a=$DIR/atscale n
  sa_registries_stop
  for n in $(seq "$ATSCALE_NODES"); do
    local CTD=$SA/n$n CTD_SOCK=$SA/n$n/containerd.sock
    ctd_stop && ctd_start
  done
  rm -rf "$a/registry" && mkdir -p "$a/registry"
  sa_registry 0 "$REG" false
  for n in $(seq "$ATSCALE_NODES"); do sa_registry "$n" "$NET.$n.1:5000" true; done
}

sa_registry() {   # sa_registry N ADDR READONLY: a docker-registry on ADDR, storage $DIR/atscale/registry
  local a=$DIR/atscale
  printf '%s\n' 'version: 0.1' 'log:' '  level: warn' 'storage:' '  filesystem:' "    rootdirectory: $a/registry" \
    '  maintenance:' '    uploadpurging:' '      enabled: false' '    readonly:' "      enabled: $3" 'http:' "  addr: $2" >"$a/reg$1.yml"
  docker-registry serve "$a/reg$1.yml" >"$a/reg$1.log" 2>&1 &
  echo $! >"$a/reg$1.pid"
  for _ in $(seq 50); do curl -fs "http://$2/v2/" >/dev/null && return; sleep 0.1; done
  echo "docker-registry on $2 did not start: see $a/reg$1.log" >&2
  return 1
}

sa_registries_stop() {
  local f
  for f in "$DIR"/atscale/reg*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
  return 0
}

sa_check() {   # sa_check N...: nodes N name the image (ferry's name, or the registry's)
  local n
  for n in "$@"; do
    sa_ctr "$n" images ls -q | grep -q "/$FLEET_IMAGE\$" || { echo "node $n does not hold $FLEET_IMAGE" >&2; return 1; }
  done
}

sa_stop() {
  local NETNS=ferry-sa n
  sa_registries_stop
  for n in $(seq "$ATSCALE_NODES"); do
    local CTD=$SA/n$n
    ctd_stop
    link_stop "$n"
  done
  rmdir "$SA" 2>/dev/null || true
}

# table NAME...: the runs named, as a markdown table.
table() {
  local k
  echo "| case | wall s | MB on the wire | CPU s, whole machine |"
  echo "| --- | ---: | ---: | ---: |"
  for k in "$@"; do
    echo "| $k | ${WALL[$k]} | $(mb "${BYTES[$k]}") | ${CPU[$k]} |"
  done
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

# median NAME N: NAME's figures are those of the run with the median wall time of NAME #1…N;
# RUNS[NAME] lists the wall times.
declare -A RUNS
median() {
  local name=$1 n=$2 i pick
  RUNS[$name]=$(for i in $(seq "$n"); do printf '%s ' "${WALL[$name #$i]}"; done)
  pick=$(for i in $(seq "$n"); do echo "${WALL[$name #$i]} $i"; done | sort -n | awk -v m=$(((n + 1) / 2)) 'NR == m { print $2 }')
  WALL[$name]=${WALL[$name #$pick]} BYTES[$name]=${BYTES[$name #$pick]} CPU[$name]=${CPU[$name #$pick]}
  [[ -z ${RX[$name #$pick]:-} ]] || RX[$name]=${RX[$name #$pick]} SENT[$name]=${SENT[$name #$pick]}
}

# The layer-level send: the rows before the helper's measure ferry without it.
ferry_send() { HOME=$DIR SSH_AUTH_SOCK= DOCKER_HOST=$SRC "$FERRY" send -q --helper never -i "$DIR/id" --known-hosts "$DIR/known_hosts" "$@"; }
ferry_json() { HOME=$DIR SSH_AUTH_SOCK= DOCKER_HOST=$SRC "$FERRY" send --progress=json --helper never -i "$DIR/id" --known-hosts "$DIR/known_hosts" "$@"; }
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
  case ${SEND_BENCH_ONLY:-} in
    trixie | sid)
      run "first byte" "" first_byte
      containerd_rows "$SEND_BENCH_ONLY"
      docker_rows "$SEND_BENCH_ONLY"
      return
      ;;
    resume)
      resume_rows
      return
      ;;
    helper)
      helper_rows
      return
      ;;
    fleet)
      fleet_rows
      return
      ;;
    atscale)
      atscale_rows
      return
      ;;
  esac

  local size go_layer
  size() { docker -H "$SRC" image inspect -f '{{.Size}}' "$1"; }
  go_layer=$(($(size "$IMAGE") - $(size "$BASE")))
  local i
  for i in $(seq "$COLD_RUNS"); do   # alternated: the machine's drift touches both alike
    wipe 1 && run "naive, cold #$i" 1 naive 1
    wipe 1 && run "ferry send, cold #$i" 1 ferry_send "$IMAGE" -H "$(dest 1)"
  done
  median "naive, cold" "$COLD_RUNS"
  median "ferry send, cold" "$COLD_RUNS"
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
  table "$n" "$c" "$w" "ferry send, cold, 3 hosts" "naive, cold, unshaped" "ferry send, cold, unshaped"
  echo
  echo "- cold, ferry / naive: $(ratio "${BYTES[$c]}" "${BYTES[$n]}")× the bytes, $(ratio "${WALL[$c]}" "${WALL[$n]}")× the time" \
    "(medians of $COLD_RUNS runs each, alternated: naive ${RUNS[$n]} s, ferry ${RUNS[$c]} s)"
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
  local root
  for root in trixie sid; do
    containerd_rows "$root"
    docker_rows "$root"
  done
  resume_rows
  helper_rows
  fleet_rows
  atscale_rows
}

main "$@"
