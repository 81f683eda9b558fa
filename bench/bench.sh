#!/usr/bin/env bash
# Benchmark ferry against docker save/load, gzip, pigz and skopeo on a ~430 MB image, then
# dedupe: a pool of four bundles sharing a base, pool add straight from the daemon, a delta.
# Runs two throwaway dockerds (src holds the cached corpus, dst is wiped for cold loads);
# nothing is pulled from a registry. Usage: bench/bench.sh   (or: make bench)
# Env: FERRY (binary), BENCH_DIR (work dir, corpus cache), RUNS (tries per measurement).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FERRY=${FERRY:-$(pwd)/bin/ferry}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ferry-bench}
RUNS=${RUNS:-2}
IMAGE=bench/go:1
BASE=bench/base:1
# The corpus: the base and three images deriving from it, each adding one real directory.
CORPUS=("$BASE" bench/go:1 bench/src:1 bench/tools:1)
CORPUS_VERSION=v2   # bump to rebuild cached corpora
OUT=$BENCH_DIR/out
SRC_HOST=unix://$BENCH_DIR/src.sock
DST_HOST=unix://$BENCH_DIR/dst.sock
POOL_ADD="ferry pool add $IMAGE (from docker)"
RESULTS=()   # measurement names in run order
declare -A WALL RSS
declare -A DD   # dedupe figures: filled by run_dedupe, printed by dedupe_report

log() { printf '>> %s\n' "$*" >&2; }

ensure_tools() {
  local -A pkg=([dockerd]=docker.io [docker]=docker.io [debootstrap]=debootstrap [pigz]=pigz [skopeo]=skopeo [jq]=jq)
  local missing=() cmd
  for cmd in "${!pkg[@]}"; do command -v "$cmd" >/dev/null || missing+=("${pkg[$cmd]}"); done
  [[ -x /usr/bin/time ]] || missing+=(time)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u)
  fi
  if [[ ! -x $FERRY ]]; then
    log "building $FERRY"
    go build -o "$FERRY" ./cmd/ferry
  fi
}

# start_daemon NAME [tmpfs]: a dockerd with everything under $BENCH_DIR/NAME, socket
# $BENCH_DIR/NAME.sock; with tmpfs, its data root is a fresh tmpfs (see docs/benchmarks.md).
start_daemon() {
  local name=$1 d=$BENCH_DIR/$1 i
  rm -rf "$d/exec" "$BENCH_DIR/$name.sock"
  mkdir -p "$d/data" "$d/exec"
  [[ ${2:-} != tmpfs ]] || mount -t tmpfs -o size=8g,mode=0711 "ferry-bench-$name" "$d/data"
  dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" -H "unix://$BENCH_DIR/$name.sock" \
    --bridge=none --iptables=false >"$BENCH_DIR/$name.log" 2>&1 &
  for i in $(seq 60); do
    docker -H "unix://$BENCH_DIR/$name.sock" version >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "dockerd $name did not start; see $BENCH_DIR/$name.log" >&2
  return 1
}

# stop_daemon NAME: only if the pidfile names a dockerd of ours (it may be stale).
stop_daemon() {
  local pidfile=$BENCH_DIR/$1/pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--pidfile $pidfile" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
}

# unmount_below DIR: every mount under DIR, deepest first.
unmount_below() {
  awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

cleanup() { stop_daemon dst; stop_daemon src; unmount_below "$BENCH_DIR"; }

src() { docker -H "$SRC_HOST" "$@"; }
dst() { docker -H "$DST_HOST" "$@"; }
ferry_at() { local host=$1; shift; DOCKER_HOST=$host "$FERRY" "$@"; }   # ferry_at HOST ARGS...

# tools_dir: a large real directory of this machine (50-150 MB) for bench/tools:1.
tools_dir() {
  local d mb
  for d in /usr/lib/gcc /usr/lib/python3* /usr/share/perl /usr/share/doc; do
    [[ -d $d ]] || continue
    mb=$(du -sm "$d" | cut -f1)
    if ((mb >= 50 && mb <= 150)); then echo "$d"; return; fi
  done
  echo "no directory of 50-150 MB on this machine for bench/tools:1" >&2
  return 1
}

# derived_images: "TAG SOURCE_DIR PATH_IN_IMAGE" for each corpus image built on $BASE.
derived_images() {
  local goroot tools
  goroot=$(go env GOROOT)
  tools=$(tools_dir)
  echo "bench/go:1 $goroot /usr/local/go"
  echo "bench/src:1 $goroot/src /opt/go-src"
  echo "bench/tools:1 $tools /opt/tools"
}

label() { src image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null; }   # label IMAGE KEY

corpus_cached() {
  local img
  for img in "${CORPUS[@]:1}"; do
    [[ $(label "$img" ferry.bench.corpus) == "$CORPUS_VERSION" ]] || return 1
  done
}

# derive_image TAG SOURCE_DIR PATH: $BASE + a copy of SOURCE_DIR at PATH + a marker file.
derive_image() {
  local tag=$1 from=$2 to=$3 ctx=$BENCH_DIR/ctx
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -a "$from" "$ctx/payload"
  echo "ferry bench corpus $CORPUS_VERSION: $tag" >"$ctx/marker"
  printf '%s\n' "FROM $BASE" "COPY payload $to" "COPY marker /ferry-bench-marker" \
    "LABEL ferry.bench.corpus=$CORPUS_VERSION ferry.bench.source=$from" >"$ctx/Dockerfile"
  log "docker build $tag ($BASE + $from at $to)"
  DOCKER_BUILDKIT=0 src build -q --network none -t "$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
}

build_corpus() {
  if corpus_cached; then log "corpus cached: ${CORPUS[*]}"; return; fi
  local cache=$BENCH_DIR/cache specs tag from to
  mkdir -p "$cache"
  if [[ ! -s $cache/rootfs.tar ]]; then
    log "debootstrap bookworm (once)"
    rm -rf "$cache/rootfs"
    debootstrap --variant=minbase bookworm "$cache/rootfs" >"$cache/debootstrap.log" 2>&1
    unmount_below "$cache/rootfs" # what debootstrap left, not the daemons' tmpfs
    tar -C "$cache/rootfs" -cf "$cache/rootfs.tar.tmp" . && mv "$cache/rootfs.tar.tmp" "$cache/rootfs.tar"
    rm -rf "$cache/rootfs"
  fi
  src image inspect "$BASE" >/dev/null 2>&1 || src import "$cache/rootfs.tar" "$BASE" >/dev/null
  specs=$(derived_images)
  while read -r tag from to; do derive_image "$tag" "$from" "$to"; done <<<"$specs"
}

# measure NAME PREP CMD...: run PREP (untimed) then CMD under GNU time, $RUNS times;
# keep the best wall time and the highest peak RSS (KB).
measure() {
  local name=$1 prep=$2; shift 2
  local tf=$BENCH_DIR/time.out best="" rss=0 w m i
  for ((i = 1; i <= RUNS; i++)); do
    $prep
    sync
    /usr/bin/time -o "$tf" -f '%e %M' "$@" >/dev/null 2>"$BENCH_DIR/cmd.err" ||
      { echo "FAILED: $name" >&2; cat "$BENCH_DIR/cmd.err" >&2; return 1; }
    read -r w m < <(tail -n1 "$tf")
    if [[ -z $best ]] || awk -v a="$w" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$w; fi
    ((m > rss)) && rss=$m
    log "$name: run $i ${w}s ${m}KB"
  done
  WALL[$name]=$best RSS[$name]=$rss
  RESULTS+=("$name")
}

# Preparation hooks (no arguments, so measure can call them by name).
noop() { :; }
wipe_dst() {
  local ids
  ids=$(dst images -aq)
  [[ -z $ids ]] || dst rmi -f $ids >/dev/null
  dst image prune -af >/dev/null
  rm -rf "$OUT/oci"
}
rm_skopeo() { rm -f "$OUT/skopeo.tar"; }   # skopeo refuses to overwrite an archive
fresh_pool() { rm -rf "$OUT/pool-add" && "$FERRY" pool init "$OUT/pool-add" >/dev/null; }

run_benchmarks() {
  local S=$SRC_HOST D=$DST_HOST
  mkdir -p "$OUT"
  measure "docker save" noop docker -H "$S" save -o "$OUT/docker.tar" "$IMAGE"
  measure "docker save | gzip" noop bash -c "docker -H $S save $IMAGE | gzip -c > $OUT/docker.tar.gz"
  measure "docker save | pigz" noop bash -c "docker -H $S save $IMAGE | pigz -c > $OUT/docker-pigz.tar.gz"
  measure "skopeo copy docker-archive" rm_skopeo \
    skopeo copy -q --src-daemon-host "$S" "docker-daemon:$IMAGE" "docker-archive:$OUT/skopeo.tar"
  measure "ferry save --compress gzip" noop env DOCKER_HOST="$S" "$FERRY" save -q --compress gzip -o "$OUT/ferry.tar.gz" "$IMAGE"
  measure "ferry save" noop env DOCKER_HOST="$S" "$FERRY" save -q -o "$OUT/ferry.tar" "$IMAGE"
  measure "$POOL_ADD" fresh_pool env DOCKER_HOST="$S" "$FERRY" pool add -q "$OUT/pool-add" "$IMAGE" --name g

  measure "docker load .tar" wipe_dst docker -H "$D" load -q -i "$OUT/docker.tar"
  measure "docker load .tar.gz (docker save|gzip)" wipe_dst docker -H "$D" load -q -i "$OUT/docker.tar.gz"
  measure "docker load ferry.tar.gz" wipe_dst docker -H "$D" load -q -i "$OUT/ferry.tar.gz"
  measure "ferry load ferry.tar.gz --to oci" wipe_dst "$FERRY" load -q -i "$OUT/ferry.tar.gz" --to "oci:$OUT/oci"
  measure "ferry load ferry.tar.gz" wipe_dst env DOCKER_HOST="$D" "$FERRY" load -q -i "$OUT/ferry.tar.gz" --to docker
  dst image inspect "$IMAGE" >/dev/null   # ferry load really produced the image
}

# Dedupe: four bundles into one pool, and a delta against the inventory of a daemon holding the base.
bundle_name() { local n=${1#*/}; echo "${n%%:*}"; }   # bench/go:1 -> go
size() { stat -c %s "$@" | awk '{ s += $1 } END { print s + 0 }'; }   # size FILE...: total bytes

# layer_bytes BUNDLE...: "BYTES COUNT" of the distinct layers the bundles carry (not those a thin
# bundle leaves out), by digest, with the sizes ferry ls reports.
layer_bytes() {
  local f
  for f; do "$FERRY" ls --json "$f"; done |
    jq -rs '[.[].images[].layers[] | select(.missing | not)] | unique_by(.digest) | "\(map(.size) | add // 0) \(length)"'
}

run_dedupe() {
  local dir=$OUT/dedupe img name f bundles=() tars=()
  rm -rf "$dir" && mkdir -p "$dir"
  for img in "${CORPUS[@]}"; do
    name=$(bundle_name "$img")
    log "dedupe: ferry save and docker save $img"
    ferry_at "$SRC_HOST" save -q -o "$dir/$name.tar" "$img"
    src save -o "$dir/docker-$name.tar" "$img"
    bundles+=("$dir/$name.tar") tars+=("$dir/docker-$name.tar")
  done

  log "dedupe: pool add of ${#bundles[@]} bundles"
  "$FERRY" pool init "$dir/pool" >/dev/null
  for f in "${bundles[@]}"; do "$FERRY" pool add -q "$dir/pool" "$f" >&2; done
  "$FERRY" pool check "$dir/pool" >&2
  DD[exports_same]=0
  for f in "${bundles[@]}"; do
    name=$(basename "$f" .tar)
    "$FERRY" pool export "$dir/pool" "$name" -o "$dir/export-$name.tar"
    cmp -s "$f" "$dir/export-$name.tar" && DD[exports_same]=$((DD[exports_same] + 1))
  done
  DD[bundles]=$(size "${bundles[@]}")
  DD[docker_tars]=$(size "${tars[@]}")
  DD[stored]=$("$FERRY" pool stats --json "$dir/pool" | jq .stored)
  read -r DD[unique] DD[unique_n] < <(layer_bytes "${bundles[@]}")

  log "dedupe: delta of $IMAGE against dst holding only $BASE"
  wipe_dst
  ferry_at "$DST_HOST" load -q --to docker "$dir/base.tar" >&2
  ferry_at "$DST_HOST" inventory -o "$dir/have.json"
  ferry_at "$SRC_HOST" save -q --have "$dir/have.json" -o "$dir/delta.tar" "$IMAGE"
  DD[have]=$(size "$dir/have.json")
  DD[delta]=$(size "$dir/delta.tar")
  read -r DD[missing] DD[missing_n] < <(layer_bytes "$dir/delta.tar")
  DD[delta_loads]=no
  if ferry_at "$DST_HOST" load -q --to docker "$dir/delta.tar" >&2 &&
    [[ $(dst image inspect -f '{{.Id}}' "$IMAGE") == $(src image inspect -f '{{.Id}}' "$IMAGE") ]]; then
    DD[delta_loads]=yes
  fi
}

ratio() { awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
# verdict VALUE TARGET [>=]: is VALUE ≤ TARGET (or ≥ with a third argument)?
verdict() { awk -v r="$1" -v t="$2" -v op="${3:-<=}" 'BEGIN { ok = (op == ">=" ? r >= t : r <= t); print (ok ? "target met" : "MISSED") }'; }

report() {
  local bytes name rss ratio_col r
  bytes=$(stat -c %s "$OUT/docker.tar")
  declare -A peer=(["ferry save --compress gzip"]="docker save|1.1" ["ferry load ferry.tar.gz"]="docker load ferry.tar.gz|0.5")
  echo "## ferry benchmark: $IMAGE ($(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1e6 }') MB as docker save tar), $(date -u +%F), $(nproc) cores, best of $RUNS"
  echo
  echo "| operation | wall s | MB/s | peak RSS MiB | ratio vs peer |"
  echo "|---|---:|---:|---:|---|"
  for name in "${RESULTS[@]}"; do
    rss=$(awk -v k="${RSS[$name]}" 'BEGIN { printf "%.0f", k / 1024 }')
    [[ $name == *"|"* ]] && rss="-"
    ratio_col=""
    if [[ -n ${peer[$name]:-} ]]; then
      r=$(ratio "$name" "${peer[$name]%|*}")
      ratio_col="$r × ${peer[$name]%|*} (≤ ${peer[$name]#*|}: $(verdict "$r" "${peer[$name]#*|}"))"
    fi
    printf '| %s | %.2f | %.0f | %s | %s |\n' "${name//|/\\|}" "${WALL[$name]}" \
      "$(awk -v b="$bytes" -v w="${WALL[$name]}" 'BEGIN { print b / 1e6 / w }')" "$rss" "$ratio_col"
  done
  echo
  echo "### Targets"
  echo
  r=$(ratio "ferry save --compress gzip" "docker save")
  echo "- ferry save --compress gzip / docker save = $r (≤ 1.1): $(verdict "$r" 1.1)"
  r=$(ratio "ferry save --compress gzip" "docker save | gzip")
  echo "- ferry save --compress gzip / (docker save | gzip) = $r (≤ 0.35): $(verdict "$r" 0.35)"
  r=$(ratio "ferry load ferry.tar.gz" "docker load ferry.tar.gz")
  echo "- ferry load / docker load, same ferry.tar.gz = $r (≤ 0.5): $(verdict "$r" 0.5)"
  r=$(ratio "docker load .tar" "docker load ferry.tar.gz")
  echo "- floor: docker load of the plain tar, the least work the daemon does to hold these layers," \
    "takes $r× docker load ferry.tar.gz: no client feeding this daemon can go below that"
  for name in "${RESULTS[@]}"; do
    [[ $name == ferry* ]] || continue
    rss=$(awk -v k="${RSS[$name]}" 'BEGIN { printf "%.1f", k / 1024 }')
    echo "- $name peak RSS = $rss MiB (≤ 64): $(verdict "$rss" 64)"
  done
  echo
  echo "### Output sizes"
  echo
  echo "| file | bytes | vs docker.tar |"
  echo "|---|---:|---:|"
  for f in docker.tar docker.tar.gz docker-pigz.tar.gz skopeo.tar ferry.tar ferry.tar.gz; do
    printf '| %s | %s | %s |\n' "$f" "$(stat -c %s "$OUT/$f")" \
      "$(awk -v a="$(stat -c %s "$OUT/$f")" -v b="$bytes" 'BEGIN { printf "%.3f", a / b }')"
  done
  echo
  dedupe_report
}

dedupe_report() {
  local img list pool_r docker_r add_r delta_limit delta_r corpus=()
  for img in "${CORPUS[@]:1}"; do corpus+=("$img = base + $(label "$img" ferry.bench.source)"); done
  pool_r=$(div "${DD[stored]}" "${DD[unique]}")
  docker_r=$(div "${DD[docker_tars]}" "${DD[stored]}")
  add_r=$(ratio "ferry save --compress gzip" "$POOL_ADD")
  delta_limit=$(awk -v m="${DD[missing]}" 'BEGIN { printf "%.0f", 1.01 * m + 65536 }')
  delta_r=$(div "${DD[delta]}" "${DD[missing]}")
  echo "### Dedupe"
  echo
  printf -v list '%s; ' "${corpus[@]}"
  echo "Corpus: $BASE (debootstrap minbase); ${list%; }."
  echo
  echo "| measure | value | ratio |"
  echo "|---|---:|---|"
  echo "| ${#CORPUS[@]} ferry save bundles, bytes | ${DD[bundles]} | |"
  echo "| ${#CORPUS[@]} docker save tars, bytes | ${DD[docker_tars]} | |"
  echo "| unique layer bytes (${DD[unique_n]} distinct layers) | ${DD[unique]} | |"
  echo "| pool stored bytes (pool add of the ${#CORPUS[@]} bundles, layers gzipped) | ${DD[stored]} | $pool_r × unique layers |"
  echo "| pool exports byte-identical to the bundles added | ${DD[exports_same]} of ${#CORPUS[@]} | |"
  echo "| docker save tars / pool stored | | $docker_r |"
  printf '| %s, wall s | %.2f | |\n' "ferry save --compress gzip $IMAGE" "${WALL[ferry save --compress gzip]}"
  printf '| %s, wall s | %.2f | %s × ferry save --compress gzip throughput |\n' "$POOL_ADD" "${WALL[$POOL_ADD]}" "$add_r"
  echo "| inventory of dst holding $BASE, bytes | ${DD[have]} | |"
  echo "| delta $IMAGE --have dst, bytes | ${DD[delta]} | $delta_r × layers carried |"
  echo "| layers the delta carries (${DD[missing_n]}, missing on dst), bytes | ${DD[missing]} | |"
  echo "| ferry load delta into dst, same image ID | ${DD[delta_loads]} | |"
  echo
  echo "- pool stored / unique layer bytes = $pool_r (≤ 0.42): $(verdict "$pool_r" 0.42)"
  echo "- pool exports byte-identical: ${DD[exports_same]} of ${#CORPUS[@]}: $( ((DD[exports_same] == ${#CORPUS[@]})) && echo "target met" || echo MISSED)"
  echo "- ${#CORPUS[@]} docker save tars / pool stored = $docker_r (no target)"
  echo "- pool add throughput / ferry save --compress gzip throughput = $add_r (≥ 0.9): $(verdict "$add_r" 0.9 '>=')"
  echo "- delta = ${DD[delta]} bytes (≤ 1.01 × ${DD[missing]} + 64 KiB = $delta_limit): $(verdict "${DD[delta]}" "$delta_limit")"
  echo "- delta loads into dst holding only the base: $([[ ${DD[delta_loads]} == yes ]] && echo "target met" || echo MISSED)"
}

main() {
  ensure_tools
  mkdir -p "$BENCH_DIR"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  cleanup                       # leftovers of an interrupted run
  rm -rf "$BENCH_DIR/dst"       # the load target starts empty every run
  log "starting dockerds in $BENCH_DIR"
  start_daemon src
  start_daemon dst tmpfs
  build_corpus
  run_benchmarks
  run_dedupe
  report | tee "$BENCH_DIR/results.md"
}

main "$@"
