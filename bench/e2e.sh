#!/usr/bin/env bash
# End-to-end benchmark: two namespaces talking through vbridge (TAP ports), through the
# Linux kernel bridge (veth pairs), and over a direct veth pair, measured in the same run:
# iperf3 TCP throughput, iperf3 UDP small-packet rate (64-byte frames), ping RTT (average
# and p99 of 200 pings at 10 ms) and the daemon's RSS with 2 connected namespaces (the
# TAP ones, after all the traffic) and with 200 (198 more by `vbr connect`, the default
# veth connection). vbridge runs twice: with TAP ports (every frame through the daemon)
# and with namespaces connected the default way (`vbr connect`, a veth pair: known flows
# forwarded by the kernel fast path). Prints a table with ratios to the kernel bridge. Where they are installed,
# two other userspace switches run the same tests with the same TAP wiring, for context:
# Open vSwitch's userspace datapath (datapath_type=netdev, type=tap ports) and VDE's
# vde_switch (-t tap ports). Set PEERS=0 to skip them.
#
# Usage (root): bench/e2e.sh [seconds per iperf3 run, default 10] [rounds, default 3]
# Each round measures the three setups one after another; the table shows medians, so a
# burst of noise from elsewhere on the machine hits all three alike.
# Everything runs in namespaces this script makes and removes; no traffic leaves them.
P=vbe$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
ROUNDS=${2:-3}
need iperf3 ping ip

# --- direct veth pair ---
mkns ${P}d1; mkns ${P}d2
ip -n ${P}d1 link add e0 type veth peer name e0 netns ${P}d2
ip -n ${P}d1 addr add 10.99.1.1/24 dev e0; ip -n ${P}d1 link set e0 up
ip -n ${P}d2 addr add 10.99.1.2/24 dev e0; ip -n ${P}d2 link set e0 up

# --- kernel bridge in its own "host" namespace ---
mkns ${P}kh; mkns ${P}k1; mkns ${P}k2
ip -n ${P}kh link add kbr type bridge; ip -n ${P}kh link set kbr up
for i in 1 2; do
  ip -n ${P}kh link add p$i type veth peer name e0 netns ${P}k$i
  ip -n ${P}kh link set p$i master kbr; ip -n ${P}kh link set p$i up
  ip -n ${P}k$i addr add 10.99.2.$i/24 dev e0; ip -n ${P}k$i link set e0 up
done

# Move TAP t1/t2 from namespace $1 into $2{1,2} as e0 with 10.99.$3.{1,2}/24.
move_taps() {
  for i in 1 2; do
    ip -n "$1" link set t$i netns "$2$i"
    ip -n "$2$i" link set t$i name e0
    ip -n "$2$i" addr add 10.99.$3.$i/24 dev e0; ip -n "$2$i" link set e0 up
  done
}

# --- vbridge in its own "host" namespace, TAP ports moved into the namespaces ---
mkns ${P}vh; mkns ${P}v1; mkns ${P}v2
# shellcheck disable=SC2086 # VBR_WRAP is words (a command to run the daemon under)
start_daemon ${P}vh ${VBR_WRAP:-}
vbr addbr br0
vbr tap add t1 --bridge br0; vbr tap add t2 --bridge br0
move_taps ${P}vh ${P}v 3
# The same daemon, a second bridge with veth-connected namespaces (kernel fast path).
vbr addbr br1
for i in 1 2; do mkns ${P}x$i; vbr connect ${P}x$i br1 --ifname e0 --ip 10.99.8.$i/24 >/dev/null; done

SETUPS="direct kernel vbridge vbveth"
# --- Open vSwitch, userspace datapath, in its own "host" namespace ---
if with_ovs; then
  mkns ${P}oh; mkns ${P}o1; mkns ${P}o2
  ovs_start ${P}oh
  ovs add-br obr -- set bridge obr datapath_type=netdev
  for i in 1 2; do ovs add-port obr t$i -- set interface t$i type=tap; done
  move_taps ${P}oh ${P}o 4
  SETUPS+=" ovs"
fi
# --- VDE: one vde_switch process holding two TAPs ---
if [ "${PEERS:-1}" = 1 ] && command -v vde_switch >/dev/null; then
  mkns ${P}wh; mkns ${P}w1; mkns ${P}w2
  ip netns exec ${P}wh vde_switch -s "$STATE/vde.ctl" -t t1 -t t2 -d -p "$STATE/vde.pid"
  PIDS+=("$STATE/vde.pid")
  move_taps ${P}wh ${P}w 5
  SETUPS+=" vde"
fi
sleep 1.5   # carrier and DAD settle

pair() { case $1 in direct) echo "${P}d1 ${P}d2 10.99.1.2";; kernel) echo "${P}k1 ${P}k2 10.99.2.2";;
  vbridge) echo "${P}v1 ${P}v2 10.99.3.2";; vbveth) echo "${P}x1 ${P}x2 10.99.8.2";; ovs) echo "${P}o1 ${P}o2 10.99.4.2";; vde) echo "${P}w1 ${P}w2 10.99.5.2";; esac; }

tcp() { # -> Gbit/s
  read -r a b ip <<<"$(pair "$1")"
  iperf_tcp "$a" "$b" "$ip"
}
udp() { # -> "received delivered" frames/s, 64-byte frames (18-byte UDP payload): what
  # iperf3 received, and what reached the receiving namespace's e0 (the switch's output,
  # before the receiving socket's own drops)
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$b" iperf3 -s -1 -D -B "$ip" >/dev/null; sleep 0.3
  local rx0 rx1 out
  rx0=$(ip netns exec "$b" cat /sys/class/net/e0/statistics/rx_packets)
  out=$(ip netns exec "$a" iperf3 -c "$ip" -u -b 0 -l 18 -t "$SECS" -J)
  rx1=$(ip netns exec "$b" cat /sys/class/net/e0/statistics/rx_packets)
  python3 -c '
import json,sys
e=json.loads(sys.argv[3])["end"]["sum"]
print("%.0f %.0f" % ((e["packets"]-e["lost_packets"])/e["seconds"], (int(sys.argv[2])-int(sys.argv[1]))/e["seconds"]))' \
    "$rx0" "$rx1" "$out"
}
rtt() { # -> "avg p99" in ms
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$a" ping -c 200 -i 0.01 -q "$ip" >/dev/null  # warm ARP and FDB
  ip netns exec "$a" ping -c 200 -i 0.01 "$ip" | python3 -c '
import re,sys
t=sorted(float(m.group(1)) for m in re.finditer(r"time=([0-9.]+)", sys.stdin.read()))
print("%.3f %.3f" % (sum(t)/len(t), t[min(len(t)-1, int(len(t)*0.99))]))'
}
# The daemon's own PID (with VBR_WRAP, $DAEMON may be the wrapper's).
rss() {
  local pid; pid=$(pgrep -n -f -- "daemon --socket $STATE/vbr.sock" || echo "$DAEMON")
  awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status"
}

declare -A T U UD R9 RA
for r in $(seq "$ROUNDS"); do
  for m in $SETUPS; do
    T[$m]+=" $(tcp $m)"
    read -r u d <<<"$(udp $m)"; U[$m]+=" $u"; UD[$m]+=" $d"
    read -r a p <<<"$(rtt $m)"; RA[$m]+=" $a"; R9[$m]+=" $p"
  done
  echo "round $r: TAP TCP ${T[vbridge]##* } UDP ${U[vbridge]##* } RTT ${RA[vbridge]##* };" \
    "veth TCP ${T[vbveth]##* } UDP ${U[vbveth]##* } RTT ${RA[vbveth]##* }" >&2
done
for m in $SETUPS; do
  T[$m]=$(median <<<"${T[$m]}"); U[$m]=$(median <<<"${U[$m]}"); UD[$m]=$(median <<<"${UD[$m]}")
  RA[$m]=$(median <<<"${RA[$m]}"); R9[$m]=$(median <<<"${R9[$m]}")
done
# Memory with the 2 TAP namespaces left (after all the traffic above), then with 198
# more, each with `vbr connect` (a veth pair, the default): 200.
for i in 1 2; do vbr disconnect ${P}x$i br1 >/dev/null; done
RSS2=$(rss)
for i in $(seq 3 200); do
  mkns ${P}n$i >/dev/null
  vbr connect ${P}n$i br0 >/dev/null
done
sleep 1
RSS200=$(rss)

declare -A NAME=([direct]="direct veth" [kernel]="kernel br" [vbridge]="vbridge TAP" [vbveth]="vbridge veth" [ovs]="OVS netdev" [vde]="VDE")
row() { # label, array name
  local -n A=$2; printf '%-28s' "$1"
  for m in $SETUPS; do printf ' %12s' "${A[$m]}"; done
  printf ' %10s %10s\n' "$(ratio "${A[vbridge]}" "${A[kernel]}")" "$(ratio "${A[vbveth]}" "${A[kernel]}")"
}
printf '\n%-28s' "metric"; for m in $SETUPS; do printf ' %12s' "${NAME[$m]}"; done; printf ' %10s %10s\n' "TAP/kernel" "veth/kernel"
row "TCP Gbit/s" T
row "UDP 64B frames/s received" U
row "UDP 64B frames/s delivered" UD
row "ping RTT avg ms" RA
row "ping RTT p99 ms" R9
printf '%-28s %s\n' "daemon RSS MB, 2 namespaces" "$RSS2"
printf '%-28s %s\n' "daemon RSS MB, 200 namespaces" "$RSS200"

# 64-byte forwarding rates with trafgen (direct veth as the limit, tagged trunk -> access,
# the fast path off, broadcast to 8 namespaces; OVS and VDE alongside): bench/rate.sh.
# RATE=0 skips them.
if [ "${RATE:-1}" = 1 ] && command -v trafgen >/dev/null; then
  echo
  VBR=$VBR bench/rate.sh 5 "$ROUNDS"
fi
