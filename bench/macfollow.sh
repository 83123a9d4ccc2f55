#!/usr/bin/env bash
# How fast the bridge MAC follows a port's MAC (seed 003's rule): a veth port with the
# lowest MAC is given a new, still lowest, MAC with `ip link set PORT address ...`, and
# the time until the bridge's host interface shows it is measured (polled every 0.5 ms),
# ROUNDS times. The Linux bridge is measured the same way, in the same run.
#
# Usage (root): bench/macfollow.sh [rounds, default 20]
P=vbm$$
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-20}
mkns ${P}h; mkns ${P}k
start_daemon ${P}h
vbr addbr br0
ip -n ${P}k link add br0 type bridge
for ns in ${P}h ${P}k; do
  ip -n $ns link add pa type veth peer name pap
  ip -n $ns link add pb type veth peer name pbp
  ip -n $ns link set pa address 0a:00:00:00:10:00
  ip -n $ns link set pb address 0a:00:00:00:20:00
done
vbr addif br0 pa
vbr addif br0 pb
ip -n ${P}k link set pa master br0; ip -n ${P}k link set pb master br0

# Sets pa's MAC to 0a:00:00:00:0f:NN in namespace $1 and prints the ms until br0 shows it.
follow() {
  local mac
  mac=$(printf '0a:00:00:00:0f:%02x' "$2")
  ip netns exec "$1" bash -c '
    m=$1; s=$(date +%s%N); ip link set pa address $m
    while [ "$(cat /sys/class/net/br0/address)" != "$m" ]; do
      now=$(date +%s%N); [ $(( (now - s) / 1000000 )) -gt 5000 ] && { echo timeout; exit; }
      sleep 0.0005
    done
    e=$(date +%s%N); awk -v s="$s" -v e="$e" "BEGIN { printf \"%.2f\n\", (e - s) / 1000000 }"' _ "$mac"
}
stats() { sort -n | awk '{ a[NR] = $1 } END { printf "median %.2f ms, max %.2f ms (%d rounds)\n", a[int((NR + 1) / 2)], a[NR], NR }'; }
V=(); K=()
for r in $(seq "$ROUNDS"); do
  V+=("$(follow ${P}h $((255 - r)))")
  K+=("$(follow ${P}k $((255 - r)))")
done
echo "vbridge:       $(printf '%s\n' "${V[@]}" | stats)"
echo "kernel bridge: $(printf '%s\n' "${K[@]}" | stats)"
