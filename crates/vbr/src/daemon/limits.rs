//! What the daemon needs of the process at start: its descriptor limit raised to the
//! hard limit (each port holds a descriptor or three; the usual soft limit of 1024 would
//! cap a host at a few hundred namespaces), and the capabilities it uses, each missing
//! one named with what it costs.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (old soft, new soft).
pub(crate) fn raise_nofile() -> Option<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    Some((soft, hard))
}

/// The capabilities the daemon uses: (number, name, what it is for).
const NEEDED: &[(u32, &str, &str)] = &[
    (
        12,
        "CAP_NET_ADMIN",
        "creating and configuring netdevs, namespaces' links and routes, nftables",
    ),
    (
        13,
        "CAP_NET_RAW",
        "AF_PACKET ports (addif, veth connections)",
    ),
    (
        21,
        "CAP_SYS_ADMIN",
        "entering and making network namespaces (setns, mounts under /run/netns)",
    ),
    (
        39,
        "CAP_BPF",
        "the kernel fast path (BPF maps and programs)",
    ),
];

/// The effective capability set of this process, from /proc/self/status.
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The needed capabilities this process lacks: (name, what it is for).
pub(crate) fn missing_capabilities() -> Vec<(&'static str, &'static str)> {
    let Some(eff) = effective() else {
        return Vec::new();
    };
    NEEDED
        .iter()
        .filter(|(bit, ..)| eff & (1u64 << bit) == 0)
        .map(|(_, name, what)| (*name, *what))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_and_named() {
        let eff = effective().expect("CapEff in /proc/self/status");
        let missing = missing_capabilities();
        for (bit, name, _) in NEEDED {
            let has = eff & (1u64 << bit) != 0;
            assert_eq!(!has, missing.iter().any(|(n, _)| n == name), "{name}");
        }
    }

    #[test]
    fn nofile_is_raised_to_the_hard_limit() {
        let (_, now) = raise_nofile().expect("getrlimit works");
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!((soft, now), (hard, hard));
    }
}
