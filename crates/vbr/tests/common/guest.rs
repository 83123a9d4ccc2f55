//! Test guests: a small Linux VM under QEMU that boots in seconds. The kernel is Debian's
//! (`linux-image-amd64`, booted uncompressed through its PVH entry), the initramfs is
//! built here from `busybox-static` and the kernel's virtio-net modules, and its init
//! loads them, brings `eth0` up with the test's address, runs the test's shell commands
//! and reports on the serial console between markers, then powers off. What it boots is
//! fetched once by `tests/guest/fetch.sh` (`.ci/run` does it first). Guests run under
//! TCG: this machine's `/dev/kvm` (PVM) cannot boot a stock kernel. A guest dies with
//! its test: QEMU gets SIGKILL when the test's thread ends (parent-death signal), and is
//! killed on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Daemon, Netns, eventually, uniq};

/// The modules virtio-net needs, in load order.
const MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Where `fetch.sh` put the kernel, busybox and modules (fetched now if missing).
fn assets() -> PathBuf {
    let dir = std::env::var("VBR_GUEST_DIR").unwrap_or_else(|_| "/var/cache/vbridge-guest".into());
    if !Path::new(&dir).join("ready").exists() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guest/fetch.sh");
        let out = Command::new(script)
            .arg(&dir)
            .output()
            .expect("run fetch.sh");
        assert!(
            out.status.success(),
            "fetching the test guest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    PathBuf::from(dir)
}

/// A `newc` cpio archive, as the kernel unpacks an initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend(b"070701");
        for f in fields {
            self.out.extend(format!("{f:08x}").as_bytes());
        }
        self.out.extend(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, (0, 0), data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// The guest's init: modules, `eth0` with `addr` (none if empty), then `script`, reported between
/// `VBR-GUEST-BEGIN` and `VBR-GUEST-END <status>`.
fn init(addr: &str, script: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in {modules}; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
ip link set lo up
ip link set eth0 up
{addr}
echo VBR-GUEST-BEGIN
(
{script}
) 2>&1
echo "VBR-GUEST-END $?"
poweroff -f
"#,
        modules = MODULES.join(" "),
        addr = if addr.is_empty() {
            String::new()
        } else {
            format!("ip addr add {addr} dev eth0")
        }
    )
}

fn initramfs(dir: &Path, addr: &str, script: &str) -> Vec<u8> {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules", "tmp"] {
        c.dir(d);
    }
    // The console the kernel opens for init before anything is mounted.
    c.entry("dev/console", 0o020_600, (5, 1), &[]);
    c.file("init", 0o755, init(addr, script).as_bytes());
    let busybox = std::fs::read(dir.join("busybox")).expect("busybox");
    c.file("bin/busybox", 0o755, &busybox);
    for m in MODULES {
        let ko = std::fs::read(dir.join("modules").join(format!("{m}.ko"))).expect("module");
        c.file(&format!("lib/modules/{m}.ko"), 0o644, &ko);
    }
    c.finish()
}

/// A running guest.
pub struct Guest {
    child: Child,
    console: PathBuf,
    initrd: PathBuf,
    /// QEMU's own messages (its standard error).
    stderr: PathBuf,
}

impl Guest {
    /// Boots a guest in namespace `ns` whose NIC (virtio-net, MAC `mac`) is QEMU's
    /// `-netdev` `netdev` (without `id`), with `addr` on `eth0`, running `script`.
    pub fn boot(ns: &Netns, netdev: &str, mac: &str, addr: &str, script: &str) -> Guest {
        let nic = [
            "-netdev".to_owned(),
            format!("{netdev},id=n0"),
            "-device".to_owned(),
            format!("virtio-net-pci,netdev=n0,mac={mac}"),
        ];
        Guest::boot_with(ns, &nic, addr, script)
    }

    /// Boots a guest in namespace `ns` with NIC arguments `nic` (as `vbr port add`
    /// prints them), with `addr` on `eth0`, running `script`.
    pub fn boot_with(ns: &Netns, nic: &[String], addr: &str, script: &str) -> Guest {
        let dir = assets();
        let name = uniq("g");
        let tmp = std::env::temp_dir();
        let initrd = tmp.join(format!("{name}.cpio"));
        let console = tmp.join(format!("{name}.console"));
        let stderr = tmp.join(format!("{name}.qemu"));
        std::fs::File::create(&initrd)
            .and_then(|mut f| f.write_all(&initramfs(&dir, addr, script)))
            .expect("write the initramfs");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "setpriv", "--pdeathsig", "KILL"])
            .arg("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults"])
            .args(["-no-reboot", "-display", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(dir.join("vmlinux"))
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyS0 panic=-1 quiet cryptomgr.notests no_timer_check",
            ])
            .args(nic)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("QEMU's log file"))
            .spawn()
            .expect("start qemu-system-x86_64");
        Guest {
            child,
            console,
            initrd,
            stderr,
        }
    }

    /// What the guest printed so far on its console.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// What QEMU itself said (its standard error): why a netdev failed, say.
    pub fn qemu_log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits up to `timeout` for `text` on the console (something the script echoes).
    pub fn wait_for(&self, text: &str, timeout: Duration) -> bool {
        super::eventually(timeout, || self.console().contains(text))
    }

    /// Waits up to `timeout` for the script to end; returns its output and exit status.
    pub fn finish(&mut self, timeout: Duration) -> (String, i32) {
        let end = Instant::now() + timeout;
        loop {
            let text = self.console();
            if let Some(at) = text.find("VBR-GUEST-END ") {
                let status = text[at + 14..]
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                let out = text
                    .split("VBR-GUEST-BEGIN")
                    .nth(1)
                    .unwrap_or_default()
                    .split("VBR-GUEST-END")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return (out, status);
            }
            if Instant::now() > end || self.child.try_wait().ok().flatten().is_some() {
                let _ = self.child.kill();
                let err = self.qemu_log();
                panic!("the guest did not finish its script:\n{text}\nqemu: {err}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.initrd);
        let _ = std::fs::remove_file(&self.console);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The QEMU NIC arguments `vbr port add` printed (its JSON answer `v`), the guest's
/// memory size (the test guests have 256 MiB) filled in where vhost-user leaves it.
pub fn nic_args(v: &serde_json::Value) -> Vec<String> {
    v["qemu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("size=RAM", "size=256M"))
        .collect()
}

/// A "host" namespace with a daemon and bridge br0, and a namespace on br0 at `ip`.
pub fn lab(ip: &str) -> (Netns, Daemon, Netns) {
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let ns = Netns::new("n");
    d.ok(&format!("connect {} br0 --ip {ip}", ns.name));
    (host, d, ns)
}

/// Kills the daemon with SIGKILL and starts it again while guest `g` pings (its script
/// echoes `OK<n>` per reply); whether the replies resume (a few more within 30 s).
pub fn carries_on_after_a_restart(d: &mut Daemon, g: &Guest) -> bool {
    d.kill9();
    let before = g.console().matches("OK").count();
    d.spawn();
    let back = eventually(Duration::from_secs(30), || {
        g.console().matches("OK").count() > before + 3
    });
    if !back {
        eprintln!("guest:\n{}\ndaemon:\n{}", g.console(), d.log());
    }
    back
}
