#!/usr/bin/env bash
# Cluster mode at scale, on paper made measurable: `vbr cluster simulate` drives one etcd
# (Debian's etcd-server, data on tmpfs, in a namespace of its own on loopback) with
# simulated nodes — each a lease, a node key, one MAC per network, and a watch on the
# whole cluster prefix, as daemons hold them — and measures how long a node joining and
# leaving takes to reach every node, a full read, and etcd's load. One row per node
# count; the watchers share this machine's 2 cores with etcd, so the figures are an
# upper bound of what a real (separate) etcd would show.
# Usage (root): bench/cluster-scale.sh [networks, default 50] [rounds, default 5] [NODES...]
P=vbs$$
source "$(dirname "$0")/lib.sh"
NETS=${1:-50}
ROUNDS=${2:-5}
shift $(( $# > 2 ? 2 : $# ))
COUNTS=("$@"); [ ${#COUNTS[@]} -gt 0 ] || COUNTS=(50 100 200 500)
need etcd etcdctl python3

mkns ${P}e
start_etcd ${P}e 127.0.0.1

echo "| nodes | networks | keys | full read | join → all nodes (median / worst) | leave → all nodes (median / worst) | watch events per join+leave | etcd RSS |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${COUNTS[@]}"; do
  ip netns exec ${P}e "$VBR" --json cluster simulate --etcd http://127.0.0.1:2379 \
    --nodes "$n" --networks "$NETS" --rounds "$ROUNDS" | python3 -c '
import json, sys
r = json.load(sys.stdin)
rounds = int(sys.argv[1])
print("| %d | %d | %d | %.0f ms | %.0f / %.0f ms | %.0f / %.0f ms | %.0f | %.0f MiB |" % (
  r["nodes"], r["networks"], r["keys"], r["full_read_secs"] * 1e3,
  r["join_secs_median"] * 1e3, r["join_secs_max"] * 1e3,
  r["leave_secs_median"] * 1e3, r["leave_secs_max"] * 1e3,
  r["watch_events"] / rounds, r["etcd_rss_mib"]))
' "$ROUNDS"
done
