#!/usr/bin/env bash
# Control-plane churn against forwarding: two namespaces on TAP ports of bridge br0 ping
# each other every 5 ms while `vbr up` and then `vbr down` bring 30 namespaces with NAT
# (bridge br1, its own subnet masqueraded) up and down on the same daemon, CYCLES times.
# Reports lost pings, the worst RTT and how many replies took over 10 ms, and the same
# figures for a quiet run of the same length before the churn, for comparison.
#
# Usage (root): bench/churn.sh [cycles, default 2] [namespaces per cycle, default 30]
# Everything runs in namespaces this script makes and removes (the daemon in its own
# "host" namespace, so its NAT table and ip_forward are that namespace's); no traffic
# leaves them.
P=vbc$$
source "$(dirname "$0")/lib.sh"
CYCLES=${1:-2}
N=${2:-30}
need ping ip nft
cleanup_more() { for i in $(seq "$N"); do ip netns del ${P}n$i 2>/dev/null || true; done; }

mkns ${P}h; mkns ${P}a; mkns ${P}b
start_daemon ${P}h
vbr addbr br0
# TAP ports (versions before veth became the default knew no --tap: TAP was theirs).
TAP=--tap; "$VBR" connect --help | grep -q -- --tap || TAP=
vbr connect ${P}a br0 $TAP --ifname e0 --ip 10.97.0.1/24 >/dev/null
vbr connect ${P}b br0 $TAP --ifname e0 --ip 10.97.0.2/24 >/dev/null
ip netns exec ${P}a ping -c 3 -W 1 10.97.0.2 >/dev/null

TOPO=$STATE/churn.toml
{
  echo '[[bridge]]'; echo 'name = "br1"'; echo 'addresses = ["10.96.0.1/16"]'; echo 'nat = true'
  for i in $(seq "$N"); do
    echo '[[namespace]]'; echo "name = \"${P}n$i\""; echo 'bridge = "br1"'
    echo "addresses = [\"10.96.$((i / 250)).$((i % 250 + 2))/16\"]"; echo 'gateway = "10.96.0.1"'
  done
} > "$TOPO"

# ping every 5 ms for $1 seconds; prints "sent received worst_ms over10"
pings() {
  ip netns exec ${P}a ping -i 0.005 -w "$1" 10.97.0.2 2>/dev/null | awk '
    /bytes from/ { for (i = 1; i <= NF; i++) if ($i ~ /^time=/) { t = substr($i, 6) + 0; if (t > max) max = t; if (t > 10) slow++ } }
    /packets transmitted/ { sent = $1; got = $4 }
    END { printf "%d %d %.3f %d\n", sent, got, max, slow }'
}

T0=$(date +%s.%N)
( for c in $(seq "$CYCLES"); do vbr up "$TOPO" >/dev/null; vbr down "$TOPO" >/dev/null; done ) &
CHURN=$!
# Ping for as long as the churn lasts.
ip netns exec ${P}a ping -i 0.005 10.97.0.2 > "$STATE/ping.txt" 2>&1 &
PING=$!
wait $CHURN
T1=$(date +%s.%N)
kill -INT $PING; wait $PING 2>/dev/null || true
CHURN_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')
read -r SENT GOT WORST SLOW < <(awk '
    /bytes from/ { for (i = 1; i <= NF; i++) if ($i ~ /^time=/) { t = substr($i, 6) + 0; if (t > max) max = t; if (t > 10) slow++ } }
    /packets transmitted/ { sent = $1; got = $4 }
    END { printf "%d %d %.3f %d\n", sent, got, max, slow }' "$STATE/ping.txt")
QUIET_S=$(printf '%.0f' "$CHURN_S")
[ "$QUIET_S" -lt 5 ] && QUIET_S=5
read -r QSENT QGOT QWORST QSLOW < <(pings "$QUIET_S")

echo "churn: $CYCLES x (vbr up + vbr down) of $N namespaces with NAT took ${CHURN_S} s"
printf '%-8s %8s %8s %8s %14s %14s\n' run sent lost worst_ms "replies>10ms" seconds
printf '%-8s %8s %8s %8s %14s %14s\n' churn "$SENT" $((SENT - GOT)) "$WORST" "$SLOW" "$CHURN_S"
printf '%-8s %8s %8s %8s %14s %14s\n' quiet "$QSENT" $((QSENT - QGOT)) "$QWORST" "$QSLOW" "$QUIET_S"
