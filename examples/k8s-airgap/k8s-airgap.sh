#!/usr/bin/env bash
# Air-gapped Kubernetes nodes with ferry: one node says what its containerd holds, the
# connected side makes a delta of only what is new, and, across the gap, one command sends
# every node the blobs it lacks over SSH, straight into its containerd (namespace k8s.io,
# where kubelet looks), unpacked and ready to run. Nothing is installed on the nodes; a
# transfer cut short resumes mid-blob when the same command runs again.
#
#   NEAR_DOCKER_HOST=… NODES="ssh://root@node1/run/k3s/containerd/containerd.sock …" \
#     k8s-airgap.sh CARRY_DIR IMAGE... [-- SSH FLAGS for ferry]
set -euo pipefail
FERRY=${FERRY:-ferry}
carry=$1
shift
images=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do images+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
ssh_flags=("$@")
read -r -a nodes <<<"$NODES"

echo "far side: what does ${nodes[0]} hold?"
"$FERRY" inventory --from containerd:k8s.io -H "${nodes[0]}" "${ssh_flags[@]}" -o "$carry/have.json"

echo "near side: a delta of ${images[*]} against it"
DOCKER_HOST=$NEAR_DOCKER_HOST "$FERRY" save "${images[@]}" --have "$carry/have.json" -o "$carry/delta.tar.gz" --checksum -q
"$FERRY" ls "$carry/delta.tar.gz"

echo "far side: verify, then send to ${#nodes[@]} nodes at once"
(cd "$carry" && sha256sum -c --quiet delta.tar.gz.sha256)
hosts=()
for n in "${nodes[@]}"; do hosts+=(-H "$n"); done
"$FERRY" send "$carry/delta.tar.gz" "${hosts[@]}" --to containerd:k8s.io "${ssh_flags[@]}" -q
