//! Sysctls inside a namespace of their own: get, set, and the [`Saved`]
//! guard restoring the value in the namespace it changed. Needs root;
//! skipped otherwise.

mod common;

use std::process::Command;

use common::in_fresh_netns;
use vbridge_host::{netns, sysctl, sysctl::Saved};

const FORWARD: &str = "net.ipv4.ip_forward";

/// What a child process in the calling thread's namespace reads.
fn cat_forward() -> String {
    let out = Command::new("cat")
        .arg("/proc/sys/net/ipv4/ip_forward")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn flip(value: &str) -> &'static str {
    if value == "1" { "0" } else { "1" }
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn get_set_and_restore_ip_forward_inside_a_namespace() {
    common::require_root();
    let host_before = sysctl::get(FORWARD).unwrap();
    in_fresh_netns(|| {
        let old = sysctl::get(FORWARD).unwrap();
        assert_eq!(old, cat_forward());

        sysctl::set(FORWARD, flip(&old)).unwrap();
        assert_eq!(cat_forward(), flip(&old));
        sysctl::set(FORWARD, &old).unwrap();
        assert_eq!(cat_forward(), old);

        let saved = Saved::set(FORWARD, flip(&old)).unwrap();
        assert_eq!(saved.old_value(), old);
        assert_eq!(sysctl::get(FORWARD).unwrap(), flip(&old));
        drop(saved);
        assert_eq!(cat_forward(), old, "restored on drop");

        let saved = Saved::set(FORWARD, flip(&old)).unwrap();
        saved.restore().unwrap();
        assert_eq!(cat_forward(), old, "restored explicitly");
    });
    assert_eq!(
        sysctl::get(FORWARD).unwrap(),
        host_before,
        "host namespace touched"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn saved_restores_its_own_namespace_from_any_thread() {
    common::require_root();
    let (ns, saved, old) = in_fresh_netns(|| {
        let old = sysctl::get(FORWARD).unwrap();
        let saved = Saved::set(FORWARD, flip(&old)).unwrap();
        (netns::current().unwrap(), saved, old)
    });
    let read = || netns::run_in(&ns, || sysctl::get(FORWARD)).unwrap();
    assert_eq!(read(), flip(&old));
    drop(saved); // on this thread, in the host namespace
    assert_eq!(read(), old);
}

#[test]
fn bad_sysctl_names_are_refused() {
    assert!(sysctl::get("net/../../etc/passwd").is_err());
    assert!(sysctl::set("", "1").is_err());
}
