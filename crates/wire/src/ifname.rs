//! Linux network interface names, as vbridge takes them everywhere (CLI, API, topology
//! files, configuration, and before any ioctl or netlink request): 1 to 15 bytes (the
//! kernel's `IFNAMSIZ` less its NUL), printable ASCII, none of `/`, `:`, `%` or white
//! space, and not `.` or `..`. That is the kernel's own `dev_valid_name` narrowed to what
//! prints safely and means no template (`%d`). The one rule; every crate calls it.

use core::fmt;

/// Longest interface name in bytes.
pub const MAX_LEN: usize = 15;

/// Why a name is not an interface name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfNameError {
    /// The name, escaped for printing.
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for IfNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid interface name \"{}\": {} (use 1-15 printable ASCII characters without '/', ':', '%' or spaces)",
            self.name, self.reason
        )
    }
}

impl std::error::Error for IfNameError {}

/// Checks `name` against the rule above.
pub fn check(name: &str) -> Result<(), IfNameError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_LEN {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()) {
        "contains a control or non-ASCII character"
    } else if name.bytes().any(|b| matches!(b, b'/' | b':' | b'%' | b' ')) {
        "contains '/', ':', '%' or a space"
    } else {
        return Ok(());
    };
    Err(IfNameError {
        name: name.escape_debug().to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "eth0",
            "veth-a.1",
            "a",
            "fifteen_chars_x",
            "br0.10",
            "ns0-eth0",
        ] {
            check(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a%d",
            "sixteen_chars_xx",
            "br\u{1b}[31m",
            "a\tb",
            "a\0b",
            "ñ",
        ] {
            let e = check(bad).unwrap_err();
            assert!(!e.to_string().contains('\u{1b}'), "escaped: {e}");
        }
    }
}
