//! Build script shared by the crates with privileged tests (`build = "../../build/...`"):
//! when the tests are not built by root, it sets `cfg(vbr_unprivileged)`, which marks
//! each privileged test `#[ignore]` with its reason, so a run without root shows them as
//! ignored, never as passed. Run as root (as CI does), they all run. A test binary built
//! as root and run as another user fails (it checks again at run time): rebuild it.
//! Likewise `cfg(vbr_no_systemd_analyze)` when `systemd-analyze` is not installed (CI
//! installs it), for the test of the systemd unit in `contrib/`.

use std::os::unix::fs::MetadataExt;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vbr_unprivileged)");
    println!("cargo::rustc-check-cfg=cfg(vbr_no_systemd_analyze)");
    println!("cargo::rerun-if-env-changed=PATH");
    let analyze = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| std::path::Path::new(d).join("systemd-analyze").exists());
    if !analyze {
        println!("cargo::rustc-cfg=vbr_no_systemd_analyze");
    }
    // sudo and su change these: a build by another user is then done anew.
    for var in ["USER", "SUDO_UID", "UID", "HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=../../build/privileged.rs");
    // /proc/self belongs to the effective user of this process.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        println!("cargo::rustc-cfg=vbr_unprivileged");
    }
}
