//! Validation of names before they reach the kernel: link names (the rules of
//! the kernel's `dev_valid_name`) and namespace names (a single file name
//! under `/run/netns`, as iproute2 requires).

use crate::HostError;

/// Longest link name: `IFNAMSIZ` (16) less the terminating NUL.
pub(crate) const MAX_LINK_NAME: usize = 15;

/// Longest namespace name: one path component (`NAME_MAX`).
const MAX_NETNS_NAME: usize = 255;

/// Checks a link (interface) name the way the kernel will.
pub(crate) fn check_link(name: &str) -> Result<(), HostError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_LINK_NAME {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
        "contains '/', ':' or white space"
    } else if name.contains('\0') {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(HostError::invalid("link name", name, reason))
}

/// Checks a named-namespace name (a file under `/run/netns`).
pub(crate) fn check_netns(name: &str) -> Result<(), HostError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NETNS_NAME {
        "longer than 255 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains(['/', '\0']) {
        "contains '/' or NUL"
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
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert_eq!(
                check_netns(bad).unwrap_err().kind(),
                ErrorKind::Invalid,
                "{bad}"
            );
        }
    }
}
