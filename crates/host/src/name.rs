//! Validation of names before they reach the kernel: link names (the rules of
//! the kernel's `dev_valid_name`) and namespace names (a single file name
//! under `/run/netns`, as iproute2 requires).

use crate::HostError;

/// Longest namespace name: one path component (`NAME_MAX`).
const MAX_NETNS_NAME: usize = 255;

/// Checks a link (interface) name with vbridge's one rule ([`vbridge_wire::ifname`]).
pub(crate) fn check_link(name: &str) -> Result<(), HostError> {
    vbridge_wire::ifname::check(name).map_err(|e| HostError::invalid("link name", name, e.reason))
}

/// Checks a named-namespace name (a file under `/run/netns`).
pub(crate) fn check_netns(name: &str) -> Result<(), HostError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NETNS_NAME {
        "longer than 255 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(HostError::invalid("namespace name", name, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn link_names() {
        for good in ["eth0", "veth-a.1", "a", "fifteen_chars_x"] {
            check_link(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen_chars_xx"] {
            let err = check_link(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad}");
            assert!(err.to_string().contains("link name"), "{err}");
        }
    }

    #[test]
    fn netns_names() {
        check_netns("blue").unwrap();
        check_netns("with space and:colon").unwrap();
        for bad in ["", ".", "..", "a/b", "a\0b", "a\u{1b}[2J"] {
            assert_eq!(
                check_netns(bad).unwrap_err().kind(),
                ErrorKind::Invalid,
                "{bad}"
            );
        }
    }
}
