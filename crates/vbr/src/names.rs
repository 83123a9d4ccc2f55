//! Names as the CLI, the API and topology files take them: interface names by the one
//! rule in [`vbridge_wire::ifname`], namespace names by `ip netns`'s rule with control
//! characters refused, and text from users or the kernel escaped before it is printed.

/// Checks an interface name (bridge, port, interface inside a namespace).
pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    vbridge_wire::ifname::check(name).map_err(|e| e.to_string())
}

/// Checks a namespace given by name (under /run/netns) or by path.
pub(crate) fn check_netns(spec: &str) -> Result<(), String> {
    if spec.chars().any(char::is_control) {
        return Err(format!(
            "invalid namespace {}: contains a control character",
            escape(spec)
        ));
    }
    if spec.contains('/') {
        if !spec.starts_with('/') {
            return Err(format!(
                "invalid namespace {}: a path must be absolute, like /proc/PID/ns/net",
                escape(spec)
            ));
        }
        return Ok(());
    }
    vbridge_host::netns::check_name(spec).map_err(|e| e.to_string())
}

/// `s` with control characters (terminal escapes, newlines) escaped, quotes added when
/// anything was escaped: safe to print.
pub(crate) fn escape(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        format!("\"{}\"", s.escape_debug())
    } else {
        s.to_owned()
    }
}

/// A message for the terminal: control characters other than newlines and tabs escaped.
pub(crate) fn escape_text(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let keep = !c.is_control() || c == '\n' || c == '\t';
            let out: Vec<char> = if keep {
                vec![c]
            } else {
                c.escape_default().collect()
            };
            out
        })
        .collect()
}
