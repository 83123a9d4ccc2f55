#!/usr/bin/env bash
# End-to-end benchmark: two namespaces talking through vbridge (TAP ports), through the
# Linux kernel bridge (veth pairs), and over a direct veth pair, measured in the same run:
# iperf3 TCP throughput, iperf3 UDP small-packet rate (64-byte frames), ping RTT (average
# and p99 of 200 pings at 10 ms) and the daemon's RSS with 2 and with 200 connected
# namespaces. Prints a table with ratios to the kernel bridge.
#
# Usage (root): bench/e2e.sh [seconds per iperf3 run, default 10] [rounds, default 3]
# Each round measures the three setups one after another; the table shows medians, so a
# burst of noise from elsewhere on the machine hits all three alike.
# Everything runs in namespaces this script makes and removes; no traffic leaves them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
VBR=${VBR:-$PWD/target/release/vbr}
[ -x "$VBR" ] || cargo build --release -p vbr
for t in iperf3 ping ip; do command -v $t >/dev/null || { echo "need $t" >&2; exit 1; }; done

P=vbe$$
NSS=()
STATE=$(mktemp -d)
DAEMON=""
cleanup() {
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  for n in "${NSS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$STATE"
}
trap cleanup EXIT
mkns() { ip netns add "$1"; ip -n "$1" link set lo up; NSS+=("$1"); }
vbr() { "$VBR" --socket "$STATE/vbr.sock" "$@"; }

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

# --- vbridge in its own "host" namespace, TAP ports moved into the namespaces ---
mkns ${P}vh; mkns ${P}v1; mkns ${P}v2
ip netns exec ${P}vh ${VBR_WRAP:-} "$VBR" daemon --socket "$STATE/vbr.sock" --state-dir "$STATE/state" 2>"$STATE/daemon.log" &
DAEMON=$!
for _ in $(seq 50); do [ -S "$STATE/vbr.sock" ] && vbr show >/dev/null 2>&1 && break; sleep 0.1; done
vbr addbr br0
for i in 1 2; do
  vbr tap add t$i --bridge br0
  ip -n ${P}vh link set t$i netns ${P}v$i
  ip -n ${P}v$i link set t$i name e0
  ip -n ${P}v$i addr add 10.99.3.$i/24 dev e0; ip -n ${P}v$i link set e0 up
done
sleep 1.5   # carrier and DAD settle

pair() { case $1 in direct) echo "${P}d1 ${P}d2 10.99.1.2";; kernel) echo "${P}k1 ${P}k2 10.99.2.2";; vbridge) echo "${P}v1 ${P}v2 10.99.3.2";; esac; }

tcp() { # -> Gbit/s
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$b" iperf3 -s -1 -D -B "$ip" >/dev/null; sleep 0.3
  ip netns exec "$a" iperf3 -c "$ip" -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
udp() { # -> received frames/s, 64-byte frames (18-byte UDP payload)
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$b" iperf3 -s -1 -D -B "$ip" >/dev/null; sleep 0.3
  ip netns exec "$a" iperf3 -c "$ip" -u -b 0 -l 18 -t "$SECS" -J | python3 -c '
import json,sys
e=json.load(sys.stdin)["end"]["sum"]
print("%.0f" % ((e["packets"]-e["lost_packets"])/e["seconds"]))'
}
rtt() { # -> "avg p99" in ms
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$a" ping -c 200 -i 0.01 -q "$ip" >/dev/null  # warm ARP and FDB
  ip netns exec "$a" ping -c 200 -i 0.01 "$ip" | python3 -c '
import re,sys
t=sorted(float(m.group(1)) for m in re.finditer(r"time=([0-9.]+)", sys.stdin.read()))
print("%.3f %.3f" % (sum(t)/len(t), t[min(len(t)-1, int(len(t)*0.99))]))'
}
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$DAEMON/status; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A T U R9 RA
for r in $(seq "$ROUNDS"); do
  for m in direct kernel vbridge; do
    T[$m]+=" $(tcp $m)"; U[$m]+=" $(udp $m)"
    read -r a p <<<"$(rtt $m)"; RA[$m]+=" $a"; R9[$m]+=" $p"
  done
  echo "round $r: TCP ${T[vbridge]##* } UDP ${U[vbridge]##* } RTT ${RA[vbridge]##* }" >&2
done
for m in direct kernel vbridge; do
  T[$m]=$(median <<<"${T[$m]}"); U[$m]=$(median <<<"${U[$m]}")
  RA[$m]=$(median <<<"${RA[$m]}"); R9[$m]=$(median <<<"${R9[$m]}")
done
RSS2=$(rss)
# 198 more connected namespaces (TAP ports), to see memory at 200 ports.
for i in $(seq 3 200); do
  mkns ${P}n$i >/dev/null
  vbr tap add t$i --bridge br0
  ip -n ${P}vh link set t$i netns ${P}n$i
done
sleep 1
RSS200=$(rss)

ratio() { python3 -c "print('%.2fx' % ($1/$2 if $2 else 0))"; }
printf '\n%-26s %12s %12s %12s %14s\n' "metric" "direct veth" "kernel br" "vbridge" "vbridge/kernel"
printf '%-26s %12s %12s %12s %14s\n' "TCP Gbit/s" "${T[direct]}" "${T[kernel]}" "${T[vbridge]}" "$(ratio ${T[vbridge]} ${T[kernel]})"
printf '%-26s %12s %12s %12s %14s\n' "UDP 64B frames/s" "${U[direct]}" "${U[kernel]}" "${U[vbridge]}" "$(ratio ${U[vbridge]} ${U[kernel]})"
printf '%-26s %12s %12s %12s %14s\n' "ping RTT avg ms" "${RA[direct]}" "${RA[kernel]}" "${RA[vbridge]}" "$(ratio ${RA[vbridge]} ${RA[kernel]})"
printf '%-26s %12s %12s %12s %14s\n' "ping RTT p99 ms" "${R9[direct]}" "${R9[kernel]}" "${R9[vbridge]}" "$(ratio ${R9[vbridge]} ${R9[kernel]})"
printf '%-26s %12s %12s %12s\n' "daemon RSS MB, 2 ports" "-" "-" "$RSS2"
printf '%-26s %12s %12s %12s\n' "daemon RSS MB, 200 ports" "-" "-" "$RSS200"
