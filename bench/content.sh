#!/usr/bin/env bash
# Benchmark content deltas on a real Debian tree (the trixie root): an image set of two
# layers (etc, usr/lib, usr/share and var as the base; usr/bin as the app) and its rebuild
# on a patched base: every mtime new, one file in fifty under usr/lib and usr/share patched
# (bytes appended), one binary in fifty under usr/bin rebuilt (27 bytes changed at four
# places, as a build ID), the package database regenerated. Every layer gets a new digest.
#
# Measures, against F (the gzip size of the rebuilt set's files whose content the old set
# lacks, the file-level floor): the content delta of the rebuilt set against an inventory
# of an OCI store holding the old set, and the layer delta; the same against the index of a
# store some 500 GB bigger (bench/bigindex: its peak memory, ≤ 64 MiB); `ferry load` of the content
# delta into that store against `ferry load` of the whole rebuilt bundle (its throughput,
# ≥ 0.7× the whole bundle's), and the peak memory of each (≤ 64 MiB for the delta's).
# With `pool`: a pool holding the old set, the rebuilt set added (its growth against F),
# `pool add` throughput against FERRY_BEFORE's (a ferry of before pools stored content) in
# the same run (the best of RUNS alternated tries, as bench.sh keeps, and the median CPU
# time), exports against the bundles added, and gc converting a pool FERRY_BEFORE made.
#   bench/content.sh [pool]   Env: FERRY (binary), FERRY_BEFORE, FERRY_TRIXIE_ROOT,
#                        CONTENT_BENCH_DIR (work dir, corpus cache), RUNS (alternated runs of
#                        each load or add, for their medians).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FERRY=${FERRY:-$(pwd)/bin/ferry}
ROOT=${FERRY_TRIXIE_ROOT:-/var/cache/ferry/trixie}
DIR=${CONTENT_BENCH_DIR:-/var/tmp/ferry-content-bench}
RUNS=${RUNS:-3}
DIRS=(etc usr/lib usr/share var)

log() { printf '>> %s\n' "$*" >&2; }
size() { stat -c %s "$1"; }
mb() { awk -v n="$1" 'BEGIN { printf "%.1f MB", n / 1e6 }'; }

# layers TREE MTIME NAME: the base and app layer tars of TREE, files sorted, one mtime.
layers() {
  local opts=(--sort=name --mtime="$2" --owner=0 --group=0 --numeric-owner --format=gnu)
  tar -C "$1" "${opts[@]}" -cf "$DIR/base-$3.tar" "${DIRS[@]}"
  tar -C "$1" "${opts[@]}" -cf "$DIR/app-$3.tar" usr/bin
}

# patch TREE: what a rebuild on a patched base changes.
patch_tree() {
  local i=0 f
  while IFS= read -r -d '' f; do
    (( i++ % 50 == 7 )) && printf '\npatched\n' >>"$f"
  done < <(find "$1/usr/lib" "$1/usr/share" -type f -print0 | sort -z)
  i=0
  while IFS= read -r -d '' f; do
    local n
    n=$(size "$f")
    if (( i++ % 50 == 7 && n > 4096 )); then
      for k in 1 2 3 4; do
        printf 'rebuilt-build-id-0123456789' | dd of="$f" bs=1 seek=$(( n * k / 5 )) conv=notrunc status=none
      done
    fi
  done < <(find "$1/usr/bin" -type f -print0 | sort -z)
  printf 'Status: regenerated\n' >>"$1/var/lib/dpkg/status"
}

corpus() {
  [[ -s $DIR/rebuilt.tar && -s $DIR/F ]] && return
  [[ -d $ROOT/usr/bin ]] || { echo "no Debian tree at $ROOT: run make deps" >&2; exit 1; }
  log "making the corpus from $ROOT"
  rm -rf "$DIR" && mkdir -p "$DIR/new"
  for d in "${DIRS[@]}" usr/bin; do
    mkdir -p "$DIR/new/$(dirname "$d")"
    cp -a "$ROOT/$d" "$DIR/new/$d"
  done
  patch_tree "$DIR/new"
  layers "$ROOT" 2026-11-01 old
  layers "$DIR/new" 2026-12-01 new
  go run ./bench/mkbundle "$DIR/old.tar" "debian/app:1=$DIR/base-old.tar,$DIR/app-old.tar"
  go run ./bench/mkbundle "$DIR/rebuilt.tar" "debian/app:1=$DIR/base-new.tar,$DIR/app-new.tar"
  # F: the files of the rebuilt tree whose content no file of the old tree has, gzipped.
  (cd "$ROOT" && find "${DIRS[@]}" usr/bin -type f -exec sha256sum {} + | cut -d' ' -f1 | sort -u) >"$DIR/old.sums"
  (cd "$DIR/new" && find "${DIRS[@]}" usr/bin -type f -exec sha256sum {} + | sort) >"$DIR/new.sums"
  join -v1 <(sort -k1,1 "$DIR/new.sums") "$DIR/old.sums" | cut -d' ' -f2- | sed 's/^ *//' >"$DIR/new.files"
  tar -C "$DIR/new" -cf - -T "$DIR/new.files" | gzip -6 | wc -c >"$DIR/F"
  rm -rf "$DIR/new" "$DIR"/base-*.tar "$DIR"/app-*.tar
}

# timed OUT CMD...: runs CMD, appends "seconds peak-KiB" to OUT.
timed() {
  local out=$1; shift
  /usr/bin/time -f '%e %M' -a -o "$out" "$@" >/dev/null
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

main() {
  corpus
  local far=$DIR/far F full
  F=$(cat "$DIR/F")
  full=$(size "$DIR/rebuilt.tar")
  rm -rf "$far" "$DIR"/run-* "$DIR"/*.txt "$DIR/cache"
  "$FERRY" load -q -i "$DIR/old.tar" --to "oci:$far"
  # The first inventory reads every layer; the second finds them in the cache.
  export XDG_CACHE_HOME=$DIR/cache
  rm -rf "$XDG_CACHE_HOME"
  timed "$DIR/inventory.txt" "$FERRY" inventory --from "oci:$far" --content -o "$DIR/have.json"
  timed "$DIR/inventory-cached.txt" "$FERRY" inventory --from "oci:$far" --content -o "$DIR/have.json"
  timed "$DIR/save.txt" "$FERRY" save -q "$DIR/rebuilt.tar" --have "$DIR/have.json" --delta content -o "$DIR/content.tar"
  "$FERRY" save -q "$DIR/rebuilt.tar" --have "$DIR/have.json" -o "$DIR/layers.tar"
  # The same delta against the index of a far bigger store: 8M chunks more, none of them held.
  go run ./bench/bigindex "$DIR/have.json" "$DIR/have-big.json" 8000000 >/dev/null
  timed "$DIR/save-big.txt" "$FERRY" save -q "$DIR/rebuilt.tar" --have "$DIR/have-big.json" --delta content -o "$DIR/content-big.tar"
  local same_big=DIFFERENT
  cmp -s "$DIR/content.tar" "$DIR/content-big.tar" && same_big=same
  rm -f "$DIR/have-big.json" "$DIR/content-big.tar"
  for i in $(seq "$RUNS"); do
    for kind in full content; do
      local in=$DIR/rebuilt.tar
      [[ $kind == full ]] || in=$DIR/content.tar
      rm -rf "$DIR/run-$kind" && cp -a "$far" "$DIR/run-$kind"
      sync
      timed "$DIR/load-$kind.txt" "$FERRY" load -q -i "$in" --to "oci:$DIR/run-$kind"
    done
  done
  local delta tf tc pc target
  delta=$(size "$DIR/content.tar")
  tf=$(cut -d' ' -f1 "$DIR/load-full.txt" | median)
  tc=$(cut -d' ' -f1 "$DIR/load-content.txt" | median)
  pc=$(cut -d' ' -f2 "$DIR/load-content.txt" | median)
  target=$(awk -v f="$F" 'BEGIN { print 0.4 * f + 1048576 }')
  echo "## Content deltas ($(date -u +%F), rebuilt Debian tree, $(mb "$full") of layers)"
  echo
  echo "| measure | figure | target |"
  echo "| --- | --- | --- |"
  echo "| F, new content gzipped | $(mb "$F") | |"
  echo "| layer delta | $(mb "$(size "$DIR/layers.tar")") | |"
  echo "| content delta | $(mb "$delta") = $(awk -v d="$delta" -v f="$F" 'BEGIN { printf "%.2f", d / f }') × F | ≤ 0.4 × F + 1 MiB = $(mb "$target"): $(awk -v d="$delta" -v t="$target" 'BEGIN { print (d <= t ? "met" : "NOT met") }') |"
  echo "| inventory --content of the old set, first / from the cache | $(cut -d' ' -f1 "$DIR/inventory.txt") s / $(cut -d' ' -f1 "$DIR/inventory-cached.txt") s | |"
  echo "| save --delta content | $(cut -d' ' -f1 "$DIR/save.txt") s, peak $(( $(cut -d' ' -f2 "$DIR/save.txt") / 1024 )) MiB | |"
  echo "| save --delta content against an inventory of 8,000,000 chunks more (some 500 GB of layers) | $(cut -d' ' -f1 "$DIR/save-big.txt") s, peak $(( $(cut -d' ' -f2 "$DIR/save-big.txt") / 1024 )) MiB, $same_big bytes | ≤ 64 MiB: $( (( $(cut -d' ' -f2 "$DIR/save-big.txt") <= 65536 )) && echo met || echo NOT met) |"
  echo "| load of the whole bundle / of the content delta (medians of $RUNS) | $tf s / $tc s: throughput $(awk -v a="$tf" -v b="$tc" 'BEGIN { printf "%.2f", a / b }')× | ≥ 0.7×: $(awk -v a="$tf" -v b="$tc" 'BEGIN { print (a / b >= 0.7 ? "met" : "NOT met") }') |"
  echo "| peak memory of the content delta's load | $(( pc / 1024 )) MiB | ≤ 64 MiB: $( (( pc <= 65536 )) && echo met || echo NOT met) |"
}

# add_once BIN TAG: into a new pool, the old set then the rebuilt set, each add timed
# ("seconds peak-KiB cpu-seconds").
add_once() {
  local bin=$1 tag=$2 pool=$DIR/pool-$2 set
  rm -rf "$pool" && "$bin" pool init "$pool"
  for set in old rebuilt; do
    sync
    /usr/bin/time -f '%e %M %U %S' -o "$DIR/time" "$bin" pool add -q "$pool" "$DIR/$set.tar" >/dev/null
    awk '{ print $1, $2, $3 + $4 }' "$DIR/time" >>"$DIR/add-$set-$tag.txt"
    du -sb "$pool" | cut -f1 >"$DIR/size-$set-$tag"
  done
}

# col FILE N: the median of column N of FILE; best FILE: the least of its first column.
col() { cut -d' ' -f"$2" "$1" | median; }
best() { cut -d' ' -f1 "$1" | sort -n | head -1; }

pool_main() {
  corpus
  local F full tags=(new) before=${FERRY_BEFORE:-}
  F=$(cat "$DIR/F")
  full=$(size "$DIR/rebuilt.tar")
  rm -rf "$DIR"/pool-* "$DIR"/add-*.txt "$DIR"/size-* "$DIR"/export-* "$DIR"/check.txt "$DIR"/gc.txt
  [[ -n $before ]] && tags=(before new)
  for i in $(seq "$RUNS"); do
    for tag in "${tags[@]}"; do
      local bin=$FERRY
      [[ $tag == before ]] && bin=$before
      add_once "$bin" "$tag"
    done
  done
  local pool=$DIR/pool-new grown whole target
  grown=$(( $(cat "$DIR/size-rebuilt-new") - $(cat "$DIR/size-old-new") ))
  target=$(awk -v f="$F" 'BEGIN { print 0.4 * f + 1048576 }')
  for name in old rebuilt; do
    timed "$DIR/export-$name.txt" "$FERRY" pool export "$pool" "$name" -o "$DIR/export-$name.tar"
    cmp -s "$DIR/export-$name.tar" "$DIR/$name.tar" && echo same >"$DIR/export-$name.same" || echo DIFFERENT >"$DIR/export-$name.same"
  done
  timed "$DIR/check.txt" "$FERRY" pool check --read-data "$pool"
  whole=$("$FERRY" pool stats --json "$pool" | jq .content.whole)
  echo "## Pools storing content ($(date -u +%F), rebuilt Debian tree, $(mb "$full") of layers, $RUNS alternated runs of each add)"
  echo
  echo "| measure | figure | target |"
  echo "| --- | --- | --- |"
  echo "| F, new content gzipped | $(mb "$F") | |"
  echo "| pool growth adding the rebuilt set to a pool holding the old | $grown bytes = $(awk -v d="$grown" -v f="$F" 'BEGIN { printf "%.2f", d / f }') × F | ≤ 0.4 × F + 1 MiB = $(mb "$target"): $(awk -v d="$grown" -v t="$target" 'BEGIN { print (d <= t ? "met" : "NOT met") }') |"
  echo "| the same layers stored whole (gzip) | $(mb "$whole") | |"
  if [[ -n $before ]]; then
    local gb
    gb=$(( $(cat "$DIR/size-rebuilt-before") - $(cat "$DIR/size-old-before") ))
    echo "| pool growth, FERRY_BEFORE | $(mb "$gb") | |"
    for set in old rebuilt; do
      local tb tn cb cn
      tb=$(best "$DIR/add-$set-before.txt")
      tn=$(best "$DIR/add-$set-new.txt")
      cb=$(col "$DIR/add-$set-before.txt" 3)
      cn=$(col "$DIR/add-$set-new.txt" 3)
      echo "| pool add of the $set set: FERRY_BEFORE / this ferry, best wall s (peak MiB) | $tb ($(( $(col "$DIR/add-$set-before.txt" 2) / 1024 ))) / $tn ($(( $(col "$DIR/add-$set-new.txt" 2) / 1024 ))): throughput $(awk -v a="$tb" -v b="$tn" 'BEGIN { printf "%.2f", a / b }')× | ≥ 0.8×: $(awk -v a="$tb" -v b="$tn" 'BEGIN { print (a / b >= 0.8 ? "met" : "NOT met") }') |"
      echo "| the same, median CPU s (user + system) | $cb / $cn: $(awk -v a="$cb" -v b="$cn" 'BEGIN { printf "%.2f", a / b }')× | |"
    done
  fi
  for name in old rebuilt; do
    echo "| pool export of the $name set | $(cut -d' ' -f1 "$DIR/export-$name.txt") s, peak $(( $(cut -d' ' -f2 "$DIR/export-$name.txt") / 1024 )) MiB, $(cat "$DIR/export-$name.same") bytes | byte-identical |"
  done
  echo "| pool check --read-data (rebuilds the rebuilt set) | $(cut -d' ' -f1 "$DIR/check.txt") s, peak $(( $(cut -d' ' -f2 "$DIR/check.txt") / 1024 )) MiB | |"
  if [[ -n $before ]]; then
    local old=$DIR/pool-before
    rm -rf "$old/ferry/content"
    timed "$DIR/gc.txt" "$FERRY" pool gc "$old"
    echo "| pool gc of a pool FERRY_BEFORE made of both sets | $(cut -d' ' -f1 "$DIR/gc.txt") s, peak $(( $(cut -d' ' -f2 "$DIR/gc.txt") / 1024 )) MiB: $(mb "$(cat "$DIR/size-rebuilt-before")") → $(mb "$(du -sb "$old" | cut -f1)") | |"
  fi
}

# `bench/content.sh corpus` makes the corpus alone (bench/send.sh's helper rows send it);
# `bench/content.sh pool` measures pools storing content.
case ${1:-} in
corpus) corpus ;;
pool) pool_main ;;
*) main "$@" ;;
esac
