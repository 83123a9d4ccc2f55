//! Named namespaces made and removed like `ip netns`, opening namespaces,
//! and running code inside one. Needs root; skipped otherwise.

mod common;

use std::{fs::File, os::unix::fs::MetadataExt, process::Command};

use common::{NsGuard, chain, in_fresh_netns, link_names};
use vbridge_host::{ErrorKind, Netlink, netns};

fn inode(fd: std::os::fd::OwnedFd) -> u64 {
    File::from(fd).metadata().unwrap().ino()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn add_list_exists_del() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.name();
    assert!(!netns::exists(&name));

    netns::add(&name).unwrap();
    assert!(netns::exists(&name));
    assert!(netns::list().unwrap().contains(&name));
    // iproute2 sees and enters it; only a loopback inside.
    let status = Command::new("ip")
        .args(["netns", "exec", &name, "true"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(link_names(Some(&name)), ["lo"]);

    netns::del(&name).unwrap();
    assert!(
        !netns::path(&name).exists(),
        "/run/netns/{name} left behind"
    );
    assert!(!netns::exists(&name));
    assert!(!netns::list().unwrap().contains(&name));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn adding_an_existing_namespace_is_an_error_naming_it() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.add();
    let err = netns::add(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let text = chain(&err);
    assert!(
        text.contains(&name) && text.contains("already exists"),
        "{text}"
    );
    // The failed add left the existing namespace alone.
    assert_eq!(link_names(Some(&name)), ["lo"]);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn deleting_a_missing_namespace_is_not_found() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.name();
    let err = netns::del(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(chain(&err).contains(&name), "{}", chain(&err));
}

#[test]
fn bad_names_are_refused_before_touching_anything() {
    for bad in ["", "..", "a/b"] {
        assert_eq!(
            netns::add(bad).unwrap_err().kind(),
            ErrorKind::Invalid,
            "{bad:?}"
        );
    }
    assert!(!netns::exists("../netns"));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn run_in_runs_inside_and_leaves_the_caller_alone() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.add();
    let ns = netns::open(&name).unwrap();
    // The caller sits in a throw-away namespace, so a run_in that failed to
    // move would leave nothing on the host.
    in_fresh_netns(|| {
        let before = inode(netns::current().unwrap());
        let inside = netns::run_in(&ns, || {
            Netlink::new()?.create_veth("vbhrun0", "vbhrun1")?;
            netns::current()
        })
        .unwrap();

        assert_eq!(inode(inside), inode(netns::open(&name).unwrap()));
        assert_eq!(
            inode(netns::current().unwrap()),
            before,
            "caller's thread moved"
        );
        let mut names = link_names(Some(&name));
        names.sort();
        assert_eq!(names, ["lo", "vbhrun0", "vbhrun1"]);
        assert_eq!(link_names(None), ["lo"]);
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn run_in_returns_the_closure_error() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.add();
    let ns = netns::open(&name).unwrap();
    let err = netns::run_in(&ns, || Netlink::new()?.delete_link("vbhnone")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn open_by_path_and_socket_opened_in_a_namespace() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.add();
    let by_path = netns::open(netns::path(&name).to_str().unwrap()).unwrap();
    assert_eq!(
        inode(netns::open(&name).unwrap()),
        inode(by_path.try_clone().unwrap())
    );

    in_fresh_netns(|| {
        // Opened inside, used from this thread: still acts inside.
        let mut netlink = Netlink::new_in(&by_path).unwrap();
        netlink.create_veth("vbhsock0", "vbhsock1").unwrap();
        assert!(link_names(Some(&name)).contains(&"vbhsock0".to_owned()));
        assert!(netlink.link_exists("vbhsock1").unwrap());
        assert_eq!(link_names(None), ["lo"]);
    });

    let err = netns::open("/nonexistent/ns/net").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn entering_something_that_is_not_a_namespace_fails() {
    common::require_root();
    let file = File::open("/proc/self/status").unwrap();
    let err = netns::run_in(&file, || Ok(())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{}", chain(&err));
}

#[test]
fn opening_a_path_that_is_no_network_namespace_fails_at_once_naming_it() {
    // No privileges needed: only our own files and namespaces are opened.
    let dir = std::env::temp_dir().join(format!("vbh-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let plain = dir.join("plain");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(&plain, "x").unwrap();
    // A FIFO with no writer would block a plain open forever.
    for path in [
        fifo.to_str().unwrap(),
        plain.to_str().unwrap(),
        dir.to_str().unwrap(),
        "/proc/self/ns/mnt",
        "/dev/null",
    ] {
        let err = netns::open(path).unwrap_err();
        let text = chain(&err);
        assert_eq!(err.kind(), ErrorKind::Invalid, "{path}: {text}");
        assert!(
            text.contains(path) && text.contains("not a network namespace"),
            "{text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(netns::open("/proc/self/ns/net").is_ok());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_panic_inside_run_in_reaches_the_caller() {
    common::require_root();
    let ns = netns::current().unwrap();
    let caught =
        std::panic::catch_unwind(|| netns::run_in(&ns, || -> Result<(), _> { panic!("boom") }));
    assert!(caught.is_err());
}
