//! Helpers shared by the privileged tests: the root check, a thread in a
//! fresh unnamed network namespace, named namespaces removed on drop, and
//! `ip -j` queries parsed as JSON.

#![allow(dead_code, unreachable_pub)]

use std::{
    error::Error,
    os::unix::fs::MetadataExt,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use nix::sched::CloneFlags;
use serde_json::Value;
use vbridge_host::netns;

/// Fails the test unless it runs as root. Privileged tests are marked
/// `#[cfg_attr(vbr_unprivileged, ignore = ...)]`: built without root they show as
/// ignored; this catches a test binary built as root and run as another user.
pub fn require_root() {
    assert!(
        is_root(),
        "this privileged test needs root: the test binary was built as root; rebuild it as this user to have it ignored"
    );
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `f` on a thread that first moves into a new, unnamed network
/// namespace; the namespace goes away with the thread. Children spawned
/// from `f` (such as `ip`) run in that namespace too. Panics propagate.
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        let handle = scope.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            f()
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Named namespaces made by one test, deleted when it ends, even on panic.
#[derive(Debug, Default)]
pub struct NsGuard {
    names: Vec<String>,
}

impl NsGuard {
    /// A fresh, unused name (`vbh<pid>_<n>`), deleted on drop whether or
    /// not the test created it.
    pub fn name(&mut self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "vbh{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.names.push(name.clone());
        name
    }

    /// A fresh name, created with [`netns::add`].
    pub fn add(&mut self) -> String {
        let name = self.name();
        netns::add(&name).expect("create named namespace");
        name
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        for name in &self.names {
            if netns::path(name).exists() && netns::del(name).is_err() {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

/// Runs `ip -j ARGS` and parses its output; panics with its stderr on failure.
pub fn ip_json(args: &[&str]) -> Value {
    let output = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        output.status.success(),
        "ip -j {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {}: {e}: {text}", args.join(" ")))
}

/// The names of the links `ip -j [-n NS] link show` lists.
pub fn link_names(ns: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["link", "show"]);
    ip_json(&args)
        .as_array()
        .expect("array of links")
        .iter()
        .filter_map(|link| link["ifname"].as_str().map(str::to_owned))
        .collect()
}

/// The error and all its causes, joined with ": ".
pub fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text += ": ";
        text += &cause.to_string();
        source = cause.source();
    }
    text
}
