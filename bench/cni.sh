#!/usr/bin/env bash
# Container start-to-network: the latency of CNI ADD and DEL with vbr-cni against the
# reference `bridge` plugin (the Linux bridge), side by side in one run, both with
# host-local IPAM, the bridge as gateway and the default route through it, alternating
# container by container in a throw-away host namespace. The first ADD of each (which
# makes the bridge) is left out. No ipMasq: the reference plugin's needs iptables.
# GAP seconds pass between calls (default 0.1), so what one plugin leaves running in the
# background (vbridge links a new port to the kernel fast path a moment after ADD
# answers; the kernel finishes removing a device after DEL) is not charged to the next
# call; GAP=0 runs them back to back, as a burst of container starts would.
# Usage: [GAP=S] bench/cni.sh [ROUNDS]   (as root)
P=vbc
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-50}
GAP=${GAP:-0.1}
CNI=$(dirname "$VBR")/vbr-cni
need nsenter /usr/lib/cni/bridge /usr/lib/cni/host-local
H=${P}h$$
mkns "$H"
start_daemon "$H"

conf() { # TYPE BRIDGE SUBNET EXTRA
  cat <<JSON
{"cniVersion":"1.0.0","name":"bench-$2","type":"$1","bridge":"$2","isGateway":true,
 "isDefaultGateway":true $4,
 "ipam":{"type":"host-local","subnet":"$3","dataDir":"$STATE/ipam-$2"}}
JSON
}
VCONF=$(conf vbridge vbc0 10.93.0.0/16 ",\"socket\":\"$STATE/vbr.sock\",\"vbr\":\"$VBR\"")
RCONF=$(conf bridge rbc0 10.94.0.0/16 "")

# run PLUGIN CONF CMD NS ID: one plugin call from the host namespace; prints its ms.
run() {
  local t0 t1
  sleep "$GAP"
  t0=$(date +%s%N)
  CNI_COMMAND=$3 CNI_CONTAINERID=$5 CNI_NETNS=/run/netns/$4 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
    nsenter --net=/run/netns/"$H" "$1" <<<"$2" >"$STATE/out" || { cat "$STATE/out" >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 ))
}

declare -A ADD DEL
one() { # NAME PLUGIN CONF ROUND
  local ns=${P}c$$x$4
  ip netns add "$ns"
  local a d
  a=$(run "$2" "$3" ADD "$ns" "c$4")
  d=$(run "$2" "$3" DEL "$ns" "c$4")
  ip netns del "$ns"
  if [ "$4" -gt 0 ]; then ADD[$1]+="$a "; DEL[$1]+="$d "; fi
}
for r in $(seq 0 "$ROUNDS"); do
  one vbridge "$CNI" "$VCONF" "$r"
  one bridge /usr/lib/cni/bridge "$RCONF" "$r"
done

stats() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1; s+=$1} END {printf "median %.2f ms  p90 %.2f ms  mean %.2f ms", v[int((NR+1)/2)]/1000, v[int(NR*0.9+0.5)]/1000, s/NR/1000}'; }
echo "rounds: $ROUNDS (each a new namespace: ADD, then DEL; ${GAP} s between calls)"
for k in vbridge bridge; do
  echo "$k ADD: $(stats <<<"${ADD[$k]}")"
  echo "$k DEL: $(stats <<<"${DEL[$k]}")"
done
va=$(stats <<<"${ADD[vbridge]}" | awk '{print $2}'); ra=$(stats <<<"${ADD[bridge]}" | awk '{print $2}')
echo "ADD median vbr-cni / reference bridge: $(awk -v a="$va" -v b="$ra" 'BEGIN {printf "%.2fx", a/b}')"
