#!/usr/bin/env bash
# Guest <-> namespace TCP, for context: a Linux guest under QEMU (TCG: this machine's
# /dev/kvm cannot boot a stock kernel, so the guest's emulated CPU, not the switch, is
# the limit here) sends to an iperf3 server in a namespace on the same bridge, by each
# route a VM takes: vbridge's vhost-user, stream and dgram ports and a TAP vbridge makes
# (`vbr port add --type`), and the Linux bridge with a TAP QEMU makes (`vhost=off`: no
# vhost-net here). The guest is the test guest of crates/vbr/tests (Debian's kernel,
# busybox, the virtio-net modules) with iperf3 and its libraries copied in.
# The switch side alone, without a guest's CPU in the way, is bench/vhost.sh.
# Usage (root): bench/vm.sh [seconds per run, default 5] [rounds, default 1]
P=vbm$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
ROUNDS=${2:-1}
need qemu-system-x86_64 iperf3 busybox setpriv
G=$(crates/vbr/tests/guest/fetch.sh)
QEMUS=()
cleanup_more() { for q in "${QEMUS[@]}"; do kill "$q" 2>/dev/null || true; done; }

# initrd DIR: the guest's initramfs: busybox, modules, iperf3 with its libraries, and an
# init that configures eth0 (10.64.0.10/24), runs iperf3 against 10.64.0.1 and powers off.
initrd() {
  local r=$1/root
  mkdir -p "$r"/{bin,dev,proc,sys,lib/modules,tmp,usr/bin}
  cp "$G/busybox" "$r/bin/busybox"
  cp "$G"/modules/*.ko "$r/lib/modules/"
  cp /usr/bin/iperf3 "$r/usr/bin/"
  for l in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do mkdir -p "$r$(dirname "$l")"; cp -L "$l" "$r$l"; done
  cat >"$r/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do insmod /lib/modules/\$m.ko; done
ip link set lo up; ip link set eth0 up; ip addr add 10.64.0.10/24 dev eth0
sleep 1
echo VBR-IPERF-BEGIN
/usr/bin/iperf3 -c 10.64.0.1 -t $SECS -f m 2>&1 | grep -E 'receiver|error'
echo VBR-IPERF-END
poweroff -f
EOF
  chmod +x "$r/init"
  (cd "$r" && find . | busybox cpio -o -H newc 2>/dev/null) >"$1/initrd.cpio"
}
initrd "$STATE"

# run NS NIC_ARGS...: boots the guest in NS with those NIC arguments; prints Mbit/s.
run() {
  local ns=$1; shift
  local con=$STATE/console.$RANDOM
  ip netns exec "$ns" setpriv --pdeathsig KILL qemu-system-x86_64 -accel tcg -m 256 -smp 1 \
    -nodefaults -no-reboot -display none -serial "file:$con" -kernel "$G/vmlinux" \
    -initrd "$STATE/initrd.cpio" -append "console=ttyS0 panic=-1 quiet cryptomgr.notests no_timer_check" \
    "$@" 2>>"$STATE/qemu.log" &
  QEMUS+=($!)
  wait $! || true
  local v
  v=$(awk '/receiver/ {for (i = 1; i < NF; i++) if ($(i+1) == "Mbits/sec") print $i}' "$con" | tail -1)
  if [ -z "$v" ]; then echo "no result from the guest ($*):" >&2; tail -5 "$con" >&2; tail -3 "$STATE/qemu.log" >&2; fi
  echo "${v:-0}"
}

# The server: a namespace on each bridge, 10.64.0.1.
server() { ip netns exec "$1" iperf3 -s -D -B 10.64.0.1 >/dev/null; }

# --- vbridge: one daemon, one bridge, a namespace, the VM ports ---
mkns ${P}h
start_daemon ${P}h
vbr addbr br0
mkns ${P}n
vbr connect ${P}n br0 --ip 10.64.0.1/24 >/dev/null
server ${P}n
args() { vbr --json port add br0 "$1" --type "$2" --mac "52:54:00:64:00:0$3" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["qemu"]))'; }
# shellcheck disable=SC2207 # the arguments have no spaces
STREAM=($(args vms stream 1)); DGRAM=($(args vmd dgram 2)); VTAP=($(args vmt tap 3))
# shellcheck disable=SC2207 # the guest's memory size filled in where vhost-user leaves it
VHU=($(args vhu vhost-user 5 | sed 's/size=RAM/size=256M/'))
# --- the Linux bridge with a TAP QEMU makes ---
mkns ${P}k; mkns ${P}kn
ip -n ${P}k link add kbr type bridge; ip -n ${P}k link set kbr up
ip -n ${P}k link add p type veth peer name eth0 netns ${P}kn
ip -n ${P}k link set p master kbr; ip -n ${P}k link set p up
ip -n ${P}kn addr add 10.64.0.1/24 dev eth0; ip -n ${P}kn link set eth0 up
server ${P}kn
ip -n ${P}k tuntap add ktap mode tap
ip -n ${P}k link set ktap master kbr; ip -n ${P}k link set ktap up
KTAP=(-netdev tap,id=k,ifname=ktap,script=no,downscript=no,vhost=off -device virtio-net-pci,netdev=k,mac=52:54:00:64:00:04)

declare -A R
for r in $(seq "$ROUNDS"); do
  R[vhost]+=" $(run ${P}h "${VHU[@]}")"
  R[stream]+=" $(run ${P}h "${STREAM[@]}")"
  R[dgram]+=" $(run ${P}h "${DGRAM[@]}")"
  R[vmtap]+=" $(run ${P}h "${VTAP[@]}")"
  R[kernel]+=" $(run ${P}k "${KTAP[@]}")"
  echo "round $r: vhost-user ${R[vhost]##* } stream ${R[stream]##* } dgram ${R[dgram]##* } vbridge tap ${R[vmtap]##* } kernel+tap ${R[kernel]##* } Mbit/s" >&2
done
printf '\n%-44s %10s\n' "guest -> namespace TCP under TCG (iperf3)" "Mbit/s"
for m in vhost stream dgram vmtap kernel; do
  case $m in vhost) n="vbridge, vhost-user (vbr port add)";; stream) n="vbridge, -netdev stream (vbr port add)";; dgram) n="vbridge, -netdev dgram (vbr port add)";;
    vmtap) n="vbridge, TAP it made (vbr port add --type tap)";; kernel) n="Linux bridge, QEMU's TAP (vhost=off)";; esac
  printf '%-44s %10s\n' "$n" "$(median <<<"${R[$m]}")"
done
