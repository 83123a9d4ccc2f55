//! The systemd unit in `contrib/` is valid (`systemd-analyze verify`), runs the daemon
//! with only the capabilities it checks for at start, and hardens it.

use std::process::Command;

#[test]
#[cfg_attr(
    vbr_no_systemd_analyze,
    ignore = "needs systemd-analyze (Debian's systemd package; CI installs it)"
)]
fn the_systemd_unit_verifies_and_names_the_capabilities_the_daemon_uses() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/vbridge.service");
    let text = std::fs::read_to_string(unit).unwrap();
    // Verify a copy whose ExecStart is the binary under test (verify checks it exists).
    let dir = std::env::temp_dir().join(format!("vbr-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("vbridge.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/vbr", env!("CARGO_BIN_EXE_vbr")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    for cap in ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_BPF"] {
        assert!(text.contains(cap), "{cap}");
    }
    for hardening in [
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=",
        "StateDirectoryMode=0700",
    ] {
        assert!(text.contains(hardening), "{hardening}");
    }
}
