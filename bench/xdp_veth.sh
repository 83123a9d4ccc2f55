#!/usr/bin/env bash
# What AF_XDP would cost vbridge's veth ports before it reads a single frame: AF_XDP needs
# an XDP program on the port's netdev, and on a veth that program alone changes the
# path of every frame (the veth then receives through its own NAPI ring and hands the
# program an xdp_buff, copied out of the skb when the skb lacks the headroom, and turns
# off the peer's GSO unless the program takes multi-buffer frames). Two namespaces on
# vbridge (`vbr connect`, veth ports, kernel fast path); side by side, in one run, with
# and without an XDP program that passes every frame (XDP_PASS, attached by a BPF link
# from a small Python helper) on both host-side veths:
#   64-byte frames from `trafgen` for SECS s (frames/s at the receiver), and
#   iperf3 TCP for SECS s (Gbit/s).
# Usage (root): bench/xdp_veth.sh [SECS, default 5] [ROUNDS, default 3]
# Everything runs in namespaces this script makes and removes; no traffic leaves them.
P=vbx$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
ROUNDS=${2:-3}
need trafgen iperf3 ip python3
mkns ${P}h
start_daemon ${P}h
vbr addbr br0
for i in 1 2; do mkns ${P}n$i; vbr connect ${P}n$i br0 --ifname e0 --ip 10.98.21.$i/24 >/dev/null; done
HOSTS=$(vbr --json show br0 | python3 -c "import json,sys; print(' '.join(p['name'] for p in json.load(sys.stdin)[0]['ports'] if p.get('netns')))")
sleep 1.5
mac() { ip netns exec "$1" cat /sys/class/net/e0/address; }
rx() { ip netns exec "$1" cat /sys/class/net/e0/statistics/rx_packets; }

# xdp_on: an XDP_PASS program on each host-side veth, held by a helper until xdp_off.
XDP=""
xdp_on() {
  ip netns exec ${P}h python3 - $HOSTS >"$STATE/xdp.out" 2>&1 <<'PY' &
import ctypes, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF, PROG_LOAD, LINK_CREATE, XDP_TYPE, BPF_XDP = 321, 5, 28, 6, 37
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return fd
insns = ctypes.create_string_buffer(bytes.fromhex("b700000002000000" "9500000000000000"))
lic = ctypes.create_string_buffer(b"GPL")
attr = struct.pack("IIQQIIQIIxxxxxxxxxxxxxxxxII", XDP_TYPE, 2, ctypes.addressof(insns),
                   ctypes.addressof(lic), 0, 0, 0, 0, 0, 0, BPF_XDP)
prog = bpf(PROG_LOAD, attr)
links = []
for name in sys.argv[1:]:
    ifindex = int(open(f"/sys/class/net/{name}/ifindex").read())
    links.append(bpf(LINK_CREATE, struct.pack("IIII", prog, ifindex, BPF_XDP, 0)))
print("ready", flush=True)
time.sleep(3600)
PY
  XDP=$!
  MORE+=($XDP)
  for _ in $(seq 50); do grep -q ready "$STATE/xdp.out" && return; sleep 0.1; done
  cat "$STATE/xdp.out" >&2; exit 1
}
xdp_off() { kill "$XDP"; wait "$XDP" 2>/dev/null || true; XDP=""; sleep 0.5; }

conf() {
  python3 -c "
b=[int(x,16) for x in '$1'.split(':')]+[int(x,16) for x in '$2'.split(':')]+[0x88,0xb5]
b+=[0]*(60-len(b)); print('{ '+', '.join('0x%02x'%x for x in b)+' }')"
}
rate() {
  local s=${P}n1 r=${P}n2 a b t0 t1
  ip netns exec $r ping -c 1 -W 1 -I e0 255.255.255.255 -b >/dev/null 2>&1 || true
  conf "$(mac $r)" "$(mac $s)" >"$STATE/tg.cfg"
  ip netns exec $s trafgen --dev e0 --conf "$STATE/tg.cfg" --cpus 1 -n 1000 -q >/dev/null 2>&1
  sleep 0.2
  a=$(rx $r); t0=$(date +%s%N)
  ip netns exec $s timeout "$SECS" trafgen --dev e0 --conf "$STATE/tg.cfg" --cpus 1 -q >/dev/null 2>&1 || true
  t1=$(date +%s%N); b=$(rx $r)
  python3 -c "print('%.0f' % (($b - $a) / (($t1 - $t0) / 1e9)))"
}
declare -A R T
for r in $(seq "$ROUNDS"); do
  for m in plain xdp; do
    [ $m = xdp ] && xdp_on
    R[$m]+=" $(rate)"
    T[$m]+=" $(iperf_tcp ${P}n1 ${P}n2 10.98.21.2)"
    [ $m = xdp ] && xdp_off
  done
  echo "round $r: plain ${R[plain]##* } f/s ${T[plain]##* } Gbit/s, xdp ${R[xdp]##* } f/s ${T[xdp]##* } Gbit/s" >&2
done
rp=$(median <<<"${R[plain]}"); rx_=$(median <<<"${R[xdp]}")
tp=$(median <<<"${T[plain]}"); tx=$(median <<<"${T[xdp]}")
printf '\n%-44s %12s %10s\n' "vbridge veth ports (kernel fast path)" "64B frames/s" "TCP Gbit/s"
printf '%-44s %12s %10s\n' "as they are" "$rp" "$tp"
printf '%-44s %12s %10s\n' "with XDP_PASS on the host-side veths" "$rx_" "$tx"
printf '%-44s %12s %10s\n' "ratio" "$(ratio "$rx_" "$rp")" "$(ratio "$tx" "$tp")"
