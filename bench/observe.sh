#!/usr/bin/env bash
# What watching one port costs the others: one daemon, one bridge, four namespaces on
# TAP ports (every frame through the daemon's forwarding thread, the worst case). Pair
# a1->a2 pings at 500 frames/s; pair b1->b2 runs iperf3 TCP. Each round measures b's
# throughput with nothing watched, with `vbr capture` of a1's port into a pcap file, and
# with `vbr trace --live --port` of a1's port; the table shows medians and the ratio to
# nothing watched.
#
# Usage (root): bench/observe.sh [seconds per iperf3 run, default 10] [rounds, default 3]
# Everything runs in namespaces this script makes and removes; no traffic leaves them.
P=vbo$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
ROUNDS=${2:-3}
need iperf3 ping ip
WATCH=""
PING=""
cleanup_more() { for p in "$WATCH" "$PING"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }

mkns ${P}h
start_daemon ${P}h
vbr addbr br0
i=0
for n in a1 a2 b1 b2; do
  i=$((i + 1))
  mkns ${P}$n
  port=$(vbr --json connect ${P}$n br0 --tap --ifname e0 --ip 10.98.0.$i/24 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["port"])')
  [ $n = a1 ] && PORT=$port
done
ip netns exec ${P}b2 iperf3 -s -D -1 >/dev/null 2>&1 || true
ip netns exec ${P}a1 ping -q -c 2 10.98.0.2 >/dev/null
ip netns exec ${P}b1 ping -q -c 2 10.98.0.4 >/dev/null

tput() {
  ip netns exec ${P}b2 iperf3 -s -D -1 >/dev/null 2>&1
  sleep 0.3
  ip netns exec ${P}b1 iperf3 -c 10.98.0.4 -t "$SECS" -J 2>/dev/null \
    | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

declare -A R
for r in $(seq "$ROUNDS"); do
  for mode in none capture live; do
    ip netns exec ${P}a1 ping -q -i 0.002 10.98.0.2 >/dev/null 2>&1 &
    PING=$!
    case $mode in
      # The binary itself in the background (not the vbr function: a background
      # subshell ignores SIGINT), so Ctrl-C's signal reaches it.
      capture) "$VBR" --socket "$STATE/vbr.sock" capture "$PORT" -w "$STATE/a.pcap" >/dev/null 2>&1 & WATCH=$! ;;
      live) "$VBR" --socket "$STATE/vbr.sock" trace br0 --live --port "$PORT" >/dev/null 2>&1 & WATCH=$! ;;
      none) WATCH="" ;;
    esac
    sleep 0.5
    R[$mode]+="$(tput) "
    [ -n "$WATCH" ] && { kill -INT "$WATCH" 2>/dev/null || true; wait "$WATCH" 2>/dev/null || true; WATCH=""; }
    kill "$PING" 2>/dev/null || true; wait "$PING" 2>/dev/null || true; PING=""
    echo "round $r $mode: ${R[$mode]}" >&2
  done
done
captured=$(tcpdump -r "$STATE/a.pcap" 2>/dev/null | wc -l || echo "?")

base=$(echo "${R[none]}" | median)
printf "%-34s %10s %8s\n" "b1->b2 TCP while a1's port is" "Gbit/s" "ratio"
for mode in none capture live; do
  m=$(echo "${R[$mode]}" | median)
  label=$mode
  case $mode in
    none) label="not watched" ;;
    capture) label="captured to pcap (vbr capture -w)" ;;
    live) label="traced live (vbr trace --live)" ;;
  esac
  printf "%-34s %10s %8s\n" "$label" "$m" "$(python3 -c "print('%.3f' % ($m/$base))")"
done
echo "(frames in the last round's pcap: $captured; $ROUNDS rounds of $SECS s, medians)"
