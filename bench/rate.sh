#!/usr/bin/env bash
# Small-frame forwarding rate, side by side in one run: `trafgen` (netsniff-ng, one CPU)
# sends 60-byte frames (64 on the wire) from one namespace to another's MAC for SECS
# seconds, and the rate is what reached the receiver's e0 (its rx_packets: what the
# switch forwarded). Rows:
#   direct      a veth pair (the generator's own limit here)
#   kernel      the Linux bridge, veth ports
#   vbveth      vbridge, `vbr connect` (veth ports: known flows in the kernel fast path)
#   fpalone     the fast path's tcx program and one flow, with no switch reading the
#               ports (crates/ports/examples/fastpath_alone.rs): what the fast path costs
#               without the packet tap the switch's sockets put in front of it
#   vbnofast    vbridge with VBR_FASTPATH=0 (every frame through the switch, AF_PACKET
#               with its PACKET_MMAP receive ring)
#   vbnoring    the same with VBR_RING=0 too (AF_PACKET read with recvmmsg)
#   vbtap       vbridge, TAP ports moved into the namespaces
#   vbtag       vbridge, frames tagged VLAN 10 from a trunk port to an access port of 10
#               (the fast path pops the tag); compare with the kernel forwarding them
#               untagged
#   ovs, vde    Open vSwitch's userspace datapath and VDE2's vde_switch, TAP ports
# and broadcast frames from one namespace to 8 others (frames/s reaching each receiver,
# their mean) through the kernel bridge, vbridge (veth), OVS and VDE.
# Usage (root): bench/rate.sh [SECS, default 5] [ROUNDS, default 3]   PEERS=0 skips OVS/VDE.
# Everything runs in namespaces this script makes and removes; no traffic leaves them.
P=vbr$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
ROUNDS=${2:-3}
need trafgen ip python3
cargo build --release -q -p vbridge-ports --example fastpath_alone
ALONE=$PWD/target/release/examples/fastpath_alone
mac() { ip netns exec "$1" cat /sys/class/net/e0/address; }
addr() { ip -n "$1" addr add "$2" dev e0; ip -n "$1" link set e0 up; }

# Unicast setups: NAME -> "sender receiver tag" (tag: VLAN the sender tags with, or 0).
declare -A PAIR
# --- direct veth pair ---
mkns ${P}d1; mkns ${P}d2
ip -n ${P}d1 link add e0 type veth peer name e0 netns ${P}d2
addr ${P}d1 10.98.1.1/24; addr ${P}d2 10.98.1.2/24
PAIR[direct]="${P}d1 ${P}d2 0"
# --- kernel bridge: 2 unicast namespaces and a broadcast group of 1 + 8 ---
mkns ${P}kh; ip -n ${P}kh link add kbr type bridge; ip -n ${P}kh link set kbr up
kport() { # NS PORT IP
  mkns "$1"; ip -n ${P}kh link add "$2" type veth peer name e0 netns "$1"
  ip -n ${P}kh link set "$2" master kbr; ip -n ${P}kh link set "$2" up; addr "$1" "$3"
}
kport ${P}k1 p1 10.98.2.1/24; kport ${P}k2 p2 10.98.2.2/24
PAIR[kernel]="${P}k1 ${P}k2 0"
for i in 0 1 2 3 4 5 6 7 8; do kport ${P}kb$i b$i 10.98.12.$((i + 1))/24; done
# --- vbridge: veth (connect), TAP, trunk -> access, broadcast group ---
mkns ${P}vh
start_daemon ${P}vh
vbr addbr br0
for i in 1 2; do mkns ${P}x$i; vbr connect ${P}x$i br0 --ifname e0 --ip 10.98.3.$i/24 >/dev/null; done
PAIR[vbveth]="${P}x1 ${P}x2 0"
# --- the fast path alone: host ends in a namespace of their own, no switch ---
mkns ${P}ah
for i in 1 2; do
  mkns ${P}a$i; ip -n ${P}ah link add h$i type veth peer name e0 netns ${P}a$i
  ip -n ${P}ah link set h$i up; addr ${P}a$i 10.98.9.$i/24
done
: >"$STATE/alone.out"
ip netns exec ${P}ah "$ALONE" h1 h2 "$(mac ${P}a2)" "$(mac ${P}a1)" >"$STATE/alone.out" 2>&1 &
MORE+=($!)
for _ in $(seq 50); do grep -q ready "$STATE/alone.out" && break; sleep 0.1; done
grep -q ready "$STATE/alone.out" || { cat "$STATE/alone.out" >&2; exit 1; }
PAIR[fpalone]="${P}a1 ${P}a2 0"
vbr addbr br1
vbr tap add t1 --bridge br1; vbr tap add t2 --bridge br1
move_taps() { # FROM_NS TO_PREFIX SUBNET: t1/t2 of FROM_NS become e0 of TO_PREFIX{1,2}
  for i in 1 2; do
    mkns "$2$i"; ip -n "$1" link set t$i netns "$2$i"; ip -n "$2$i" link set t$i name e0
    addr "$2$i" 10.98.$3.$i/24
  done
}
move_taps ${P}vh ${P}t 4
PAIR[vbtap]="${P}t1 ${P}t2 0"
vbr addbr br2
mkns ${P}g1; mkns ${P}g2
vbr connect ${P}g1 br2 --ifname e0 >/dev/null; vbr connect ${P}g2 br2 --ifname e0 --ip 10.98.5.2/24 >/dev/null
vbr link set "$(vbr --json show br2 | python3 -c "import json,sys; print([p['name'] for p in json.load(sys.stdin)[0]['ports'] if p.get('netns')=='${P}g1'][0])")" trunk 10 >/dev/null
vbr link set "$(vbr --json show br2 | python3 -c "import json,sys; print([p['name'] for p in json.load(sys.stdin)[0]['ports'] if p.get('netns')=='${P}g2'][0])")" access 10 >/dev/null
PAIR[vbtag]="${P}g1 ${P}g2 10"
vbr addbr br3
for i in 0 1 2 3 4 5 6 7 8; do mkns ${P}vb$i; vbr connect ${P}vb$i br3 --ifname e0 --ip 10.98.13.$((i + 1))/24 >/dev/null; done
# --- vbridge with the fast path off: a second daemon ---
mkns ${P}nh
start_more nf ${P}nh VBR_FASTPATH=0
nf() { "$VBR" --socket "$STATE/nf.sock" "$@"; }
nf addbr br0
for i in 1 2; do mkns ${P}f$i; nf connect ${P}f$i br0 --ifname e0 --ip 10.98.6.$i/24 >/dev/null; done
PAIR[vbnofast]="${P}f1 ${P}f2 0"
# --- and with recvmmsg instead of the receive ring: a third daemon ---
mkns ${P}rh
start_more nr ${P}rh VBR_FASTPATH=0 VBR_RING=0
nr() { "$VBR" --socket "$STATE/nr.sock" "$@"; }
nr addbr br0
for i in 1 2; do mkns ${P}r$i; nr connect ${P}r$i br0 --ifname e0 --ip 10.98.7.$i/24 >/dev/null; done
PAIR[vbnoring]="${P}r1 ${P}r2 0"
UNI="direct kernel vbveth fpalone vbnofast vbnoring vbtap vbtag"
BCAST="kernel vbveth"
declare -A GROUP=([kernel]=${P}kb [vbveth]=${P}vb)

# --- peers: OVS userspace datapath and VDE2, TAP ports ---
if with_ovs; then
  mkns ${P}oh
  ovs_start ${P}oh
  ovs add-br obr -- set bridge obr datapath_type=netdev
  for i in 1 2; do ovs add-port obr t$i -- set interface t$i type=tap; done
  move_taps ${P}oh ${P}o 7
  PAIR[ovs]="${P}o1 ${P}o2 0"; UNI+=" ovs"
  ovs add-br obb -- set bridge obb datapath_type=netdev
  for i in 0 1 2 3 4 5 6 7 8; do
    ovs add-port obb b$i -- set interface b$i type=tap
    mkns ${P}ob$i; ip -n ${P}oh link set b$i netns ${P}ob$i; ip -n ${P}ob$i link set b$i name e0
    addr ${P}ob$i 10.98.17.$((i + 1))/24
  done
  GROUP[ovs]=${P}ob; BCAST+=" ovs"
fi
if [ "${PEERS:-1}" = 1 ] && command -v vde_switch >/dev/null; then
  mkns ${P}wh
  ip netns exec ${P}wh vde_switch -s "$STATE/vde.ctl" -t t1 -t t2 -d -p "$STATE/vde.pid"
  PIDS+=("$STATE/vde.pid")
  move_taps ${P}wh ${P}w 8
  PAIR[vde]="${P}w1 ${P}w2 0"; UNI+=" vde"
  taps=(); for i in 0 1 2 3 4 5 6 7 8; do taps+=(-t b$i); done
  ip netns exec ${P}wh vde_switch -s "$STATE/vdeb.ctl" "${taps[@]}" -d -p "$STATE/vdeb.pid"
  PIDS+=("$STATE/vdeb.pid")
  for i in 0 1 2 3 4 5 6 7 8; do
    mkns ${P}wb$i; ip -n ${P}wh link set b$i netns ${P}wb$i; ip -n ${P}wb$i link set b$i name e0
    addr ${P}wb$i 10.98.18.$((i + 1))/24
  done
  GROUP[vde]=${P}wb; BCAST+=" vde"
fi
sleep 1.5 # carrier and DAD settle

# conf DST SRC TAG: a trafgen configuration of one 60-byte frame (64 with a tag) of an
# experimental EtherType (0x88b5: no stack takes it).
conf() {
  python3 - "$@" <<'PY'
import sys
dst, src, tag = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = [int(x, 16) for x in dst.split(":")] + [int(x, 16) for x in src.split(":")]
if tag:
    b += [0x81, 0x00, tag >> 8, tag & 0xFF]
b += [0x88, 0xB5]
b += [0] * (60 + (4 if tag else 0) - len(b))
print("{ " + ", ".join("0x%02x" % x for x in b) + " }")
PY
}
rx() { ip netns exec "$1" cat /sys/class/net/e0/statistics/rx_packets; }
# send NS DST SRC TAG: trafgen for SECS seconds; prints the seconds it ran.
send() {
  conf "$2" "$3" "$4" >"$STATE/tg.cfg"
  local t0 t1
  t0=$(date +%s%N)
  ip netns exec "$1" timeout "$SECS" trafgen --dev e0 --conf "$STATE/tg.cfg" --cpus 1 -q >/dev/null 2>&1 || true
  t1=$(date +%s%N)
  python3 -c "print(($t1 - $t0) / 1e9)"
}
unicast() { # SETUP -> frames/s at the receiver
  read -r s r tag <<<"${PAIR[$1]}"
  # Both learned (and the flow known) before the burst: one frame each way.
  ip netns exec "$r" ping -c 1 -W 1 -I e0 255.255.255.255 -b >/dev/null 2>&1 || true
  local a b secs
  conf "$(mac "$r")" "$(mac "$s")" "$tag" >"$STATE/tg.cfg" # warm: the flow is offered
  ip netns exec "$s" trafgen --dev e0 --conf "$STATE/tg.cfg" --cpus 1 -n 1000 -q >/dev/null 2>&1
  sleep 0.2
  a=$(rx "$r"); secs=$(send "$s" "$(mac "$r")" "$(mac "$s")" "$tag"); b=$(rx "$r")
  python3 -c "print('%.0f' % (($b - $a) / $secs))"
}
broadcast() { # SETUP -> mean frames/s at each of the 8 receivers
  local g=${GROUP[$1]} a=0 b=0 secs i
  for i in 1 2 3 4 5 6 7 8; do a=$((a + $(rx "$g$i"))); done
  secs=$(send "${g}0" ff:ff:ff:ff:ff:ff "$(mac "${g}0")" 0)
  for i in 1 2 3 4 5 6 7 8; do b=$((b + $(rx "$g$i"))); done
  python3 -c "print('%.0f' % (($b - $a) / 8 / $secs))"
}

declare -A R B
for r in $(seq "$ROUNDS"); do
  for m in $UNI; do R[$m]+=" $(unicast "$m")"; done
  for m in $BCAST; do B[$m]+=" $(broadcast "$m")"; done
  echo "round $r: $(for m in $UNI; do printf '%s %s  ' "$m" "${R[$m]##* }"; done)" >&2
done
declare -A NAME=([direct]="direct veth pair" [kernel]="Linux bridge" [vbveth]="vbridge veth (fast path)" [fpalone]="  fast path alone, no switch"
  [vbnofast]="vbridge veth, VBR_FASTPATH=0" [vbnoring]="  same, VBR_RING=0 (recvmmsg)" [vbtap]="vbridge TAP" [vbtag]="vbridge trunk->access, tagged"
  [ovs]="OVS userspace (tap)" [vde]="VDE2 (tap)")
printf '\n%-34s %12s %10s %10s\n' "64-byte frames, one receiver" "frames/s" "/kernel" "/direct"
for m in $UNI; do
  v=$(median <<<"${R[$m]}")
  printf '%-34s %12s %10s %10s\n' "${NAME[$m]}" "$v" "$(ratio "$v" "$(median <<<"${R[kernel]}")")" "$(ratio "$v" "$(median <<<"${R[direct]}")")"
done
printf '\n%-34s %12s %10s\n' "broadcast to 8 namespaces" "frames/s each" "/kernel"
for m in $BCAST; do
  v=$(median <<<"${B[$m]}")
  printf '%-34s %12s %10s\n' "${NAME[$m]}" "$v" "$(ratio "$v" "$(median <<<"${B[kernel]}")")"
done
