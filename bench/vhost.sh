#!/usr/bin/env bash
# The switch side of VM traffic, measured without a guest (under TCG a guest's emulated
# CPU, not the switch, would be the limit): crates/ports/examples/vhost_load.rs plays
# two VMs' NICs and pumps frames from one to the other, counting what arrives, by three
# routes in the same run:
#   - vbridge, two vhost-user ports: the generator is the vhost-user frontend (shared
#     memory, split virtqueues, vnet headers; as DPDK's virtio-user);
#   - vbridge, two TAP ports it made (`vbr port add --type tap`), the generator opening
#     them as QEMU does (vnet headers, offloads);
#   - the Linux bridge with two TAPs, opened the same way.
# Frames: 64 bytes, 1500 bytes, and 64 KB TCP segments the receiver takes whole (TSO).
# Usage (root): bench/vhost.sh [seconds per run, default 5] [rounds, default 3]
P=vbv$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
ROUNDS=${2:-3}
cargo build --release -q -p vbridge-ports --example vhost_load
LOAD=$PWD/target/release/examples/vhost_load

# --- vbridge: one daemon, one bridge, two vhost-user ports and two TAP ports ---
mkns ${P}h
start_daemon ${P}h
vbr addbr br0
sock() { vbr --json port add br0 "$1" --type "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["socket"])'; }
VA=$(sock va vhost-user); VB=$(sock vb vhost-user)
sock ta tap >/dev/null; sock tb tap >/dev/null
# --- the Linux bridge with two TAPs ---
mkns ${P}k
ip -n ${P}k link add kbr type bridge; ip -n ${P}k link set kbr up
for t in kta ktb; do
  ip -n ${P}k tuntap add "$t" mode tap vnet_hdr
  ip -n ${P}k link set "$t" master kbr; ip -n ${P}k link set "$t" up
done

# load NS ARGS...: one run of the generator; prints "frames/s Gbit/s".
load() { local ns=$1; shift; ip netns exec "$ns" "$LOAD" "$@" | awk '{print $2, $4}'; }

declare -A F G
for size in 64 1500 65000; do
  for r in $(seq "$ROUNDS"); do
    read -r f g < <(load ${P}h vhost "$VA" "$VB" $size "$SECS"); F[vhost$size]+=" $f"; G[vhost$size]+=" $g"
    read -r f g < <(load ${P}h tap ta tb $size "$SECS"); F[tap$size]+=" $f"; G[tap$size]+=" $g"
    read -r f g < <(load ${P}k tap kta ktb $size "$SECS"); F[kernel$size]+=" $f"; G[kernel$size]+=" $g"
    echo "$size bytes, round $r: vhost-user ${F[vhost$size]##* } vbridge tap ${F[tap$size]##* } kernel+tap ${F[kernel$size]##* } frames/s" >&2
  done
done
printf '\n%-34s %8s %12s %9s %10s\n' "route" "frame" "frames/s" "Gbit/s" "/ kernel"
for size in 64 1500 65000; do
  k=$(median <<<"${F[kernel$size]}")
  for m in vhost tap kernel; do
    case $m in vhost) n="vbridge, vhost-user ports";; tap) n="vbridge, TAP ports";; kernel) n="Linux bridge, TAP ports";; esac
    f=$(median <<<"${F[$m$size]}"); g=$(median <<<"${G[$m$size]}")
    printf '%-34s %8s %12s %9s %9.2fx\n' "$n" "$size" "$f" "$g" "$(echo "$f $k" | awk '{print ($2 > 0) ? $1 / $2 : 0}')"
  done
done
