//! Sysctls inside a namespace of their own: get and set, and a value changed under the
//! ledger put back by `ledger::undo` (also from a fresh ledger opened after the process
//! that changed it died, as the daemon's next start does). Needs root.

mod common;

use std::process::Command;

use common::in_fresh_netns;
use vbridge_host::ledger::{Ledger, Object, Owner};
use vbridge_host::sysctl;

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

        // Recorded before the change; restored by a ledger read back from disk.
        let dir = std::env::temp_dir().join(format!("vbh-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        let object = Object::Sysctl {
            path: "net/ipv4/ip_forward".into(),
        };
        {
            let l = Ledger::open(&path).unwrap();
            let owner = Owner::Topology {
                name: "t".into(),
                run: None,
            };
            assert!(l.put(owner, object.clone(), Some(old.clone())).unwrap());
            sysctl::set(FORWARD, flip(&old)).unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        let rec = l.get(&object).unwrap();
        assert_eq!(cat_forward(), flip(&old));
        vbridge_host::ledger::undo(&rec).unwrap();
        assert_eq!(cat_forward(), old, "restored from the ledger");
        let _ = std::fs::remove_dir_all(&dir);
    });
    assert_eq!(
        sysctl::get(FORWARD).unwrap(),
        host_before,
        "host namespace touched"
    );
}

#[test]
fn bad_sysctl_names_are_refused() {
    assert!(sysctl::get("net/../../etc/passwd").is_err());
    assert!(sysctl::set("", "1").is_err());
}
