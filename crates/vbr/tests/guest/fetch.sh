#!/bin/sh
# What test guests boot, fetched once into DIR (default /var/cache/vbridge-guest): the
# kernel of Debian's linux-image-amd64 and busybox-static, unpacked (never installed on
# this machine), and the kernel's uncompressed vmlinux (QEMU boots it through its PVH
# entry, without spending seconds of TCG time on decompression). Needs apt's package
# lists (`apt-get update`). Prints DIR.
set -eu
DIR=${1:-/var/cache/vbridge-guest}
if [ ! -f "$DIR/ready" ]; then
  rm -rf "$DIR.tmp"; mkdir -p "$DIR.tmp/deb" "$DIR.tmp/root"
  cd "$DIR.tmp/deb"
  img=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$img" ] || { echo "fetch.sh: no linux-image-amd64 in apt's lists (apt-get update?)" >&2; exit 1; }
  apt-get download -q "$img" busybox-static >/dev/null 2>&1 || apt-get download "$img" busybox-static
  for d in *.deb; do dpkg-deb -x "$d" ../root; done
  cd ..
  z=$(ls root/boot/vmlinuz-*)
  # The bzImage's payload is xz (CONFIG_KERNEL_XZ): decompress from its magic on.
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$z" | head -1 | cut -d: -f1)
  tail -c +$((off + 1)) "$z" | xz -dc --single-stream >vmlinux
  cp root/bin/busybox busybox
  mkdir modules
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    cp "$(find root/lib/modules -name "$m.ko" | head -1)" modules/
  done
  rm -rf deb root
  touch ready
  rm -rf "$DIR"; mv "$DIR.tmp" "$DIR"
fi
echo "$DIR"
