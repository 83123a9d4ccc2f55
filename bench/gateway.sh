#!/usr/bin/env bash
# A namespace talking to the host through its bridge's own address (the gateway of a
# Docker-style network): iperf3 TCP for SECS seconds from the namespace to a server on
# the bridge's address, and from the host to a server in the namespace, side by side in
# one run:
#   kernel     the Linux bridge, the address on the bridge device
#   vbridge    vbridge, the address on its host port (a TAP the daemon reads): the
#              namespace's frames to it go through the kernel fast path (`BPF_F_INGRESS`
#              into the TAP), and so do the host's to the namespace (the program at the
#              TAP's egress)
#   gateway    vbridge, the address on a VLAN gateway (br1.10, a TAP the daemon reads,
#              an access port of VLAN 10 like the namespace's), on the fast path the same
#              way
#   nofast     the same as vbridge with VBR_FASTPATH=0 (both directions through the
#              daemon)
# Usage (root): bench/gateway.sh [SECS, default 5] [ROUNDS, default 3]
# Everything runs in namespaces this script makes and removes; no traffic leaves them.
P=vbg$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
ROUNDS=${2:-3}
need iperf3 ip python3
# --- the Linux bridge ---
mkns ${P}kh; mkns ${P}k1
ip -n ${P}kh link add kbr type bridge
ip -n ${P}kh addr add 10.98.31.1/24 dev kbr; ip -n ${P}kh link set kbr up
ip -n ${P}kh link add p1 type veth peer name e0 netns ${P}k1
ip -n ${P}kh link set p1 master kbr; ip -n ${P}kh link set p1 up
ip -n ${P}k1 addr add 10.98.31.2/24 dev e0; ip -n ${P}k1 link set e0 up
# --- vbridge, and a second daemon with the fast path off ---
mkns ${P}vh; mkns ${P}v1
start_daemon ${P}vh
vbr addbr br0
ip -n ${P}vh addr add 10.98.32.1/24 dev br0; ip -n ${P}vh link set br0 up
vbr connect ${P}v1 br0 --ifname e0 --ip 10.98.32.2/24 >/dev/null
mkns ${P}g1
cat >"$STATE/gw.toml" <<EOF
[[bridge]]
name = "br1"

[[bridge.vlan]]
vid = 10
addresses = ["10.98.34.1/24"]

[[namespace]]
name = "${P}g1"
bridge = "br1"
ifname = "e0"
addresses = ["10.98.34.2/24"]
access = 10
EOF
vbr up "$STATE/gw.toml" >/dev/null
mkns ${P}nh; mkns ${P}n1
start_more nf ${P}nh VBR_FASTPATH=0
nf() { "$VBR" --socket "$STATE/nf.sock" "$@"; }
nf addbr br0
ip -n ${P}nh addr add 10.98.33.1/24 dev br0; ip -n ${P}nh link set br0 up
nf connect ${P}n1 br0 --ifname e0 --ip 10.98.33.2/24 >/dev/null
sleep 1.5 # carrier and DAD settle
declare -A FROM=([kernel]="${P}k1 ${P}kh 10.98.31.1" [vbridge]="${P}v1 ${P}vh 10.98.32.1" [gateway]="${P}g1 ${P}vh 10.98.34.1" [nofast]="${P}n1 ${P}nh 10.98.33.1")
declare -A NSIP=([kernel]=10.98.31.2 [vbridge]=10.98.32.2 [gateway]=10.98.34.2 [nofast]=10.98.33.2)
MODES="kernel vbridge gateway nofast"
sleep 1 # the host port joins the fast path within a housekeeping tick
declare -A T U
for r in $(seq "$ROUNDS"); do
  for m in $MODES; do
    read -r ns host ip <<<"${FROM[$m]}"
    ip netns exec "$ns" ping -c 3 -i 0.2 -W 1 "$ip" >/dev/null # learned, and the flow offered
    ip netns exec "$host" ping -c 3 -i 0.2 -W 1 "${NSIP[$m]}" >/dev/null
    T[$m]+=" $(iperf_tcp "$ns" "$host" "$ip")"
    U[$m]+=" $(iperf_tcp "$host" "$ns" "${NSIP[$m]}")"
  done
  echo "round $r: to the host: kernel ${T[kernel]##* } vbridge ${T[vbridge]##* } gateway ${T[gateway]##* } nofast ${T[nofast]##* }; from it: kernel ${U[kernel]##* } vbridge ${U[vbridge]##* } gateway ${U[gateway]##* } nofast ${U[nofast]##* } Gbit/s" >&2
done
declare -A NAME=([kernel]="Linux bridge" [vbridge]="vbridge (fast path to and from the host port)" [gateway]="vbridge VLAN gateway (fast path, VLAN 10)" [nofast]="vbridge, VBR_FASTPATH=0")
printf '\n%-48s %12s %8s %12s %8s\n' "TCP Gbit/s, through the bridge's address" "ns -> host" "/kernel" "host -> ns" "/kernel"
for m in $MODES; do
  t=$(median <<<"${T[$m]}"); u=$(median <<<"${U[$m]}")
  printf '%-48s %12s %8s %12s %8s\n' "${NAME[$m]}" "$t" "$(ratio "$t" "$(median <<<"${T[kernel]}")")" "$u" "$(ratio "$u" "$(median <<<"${U[kernel]}")")"
done
