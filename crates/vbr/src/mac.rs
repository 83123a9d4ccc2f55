//! Random locally administered unicast MACs: for a new bridge, and for a container's
//! interface when its runtime gives none (chosen by the plugin, as the kernel would, so
//! the plugin knows it without asking the kernel again).

use vbridge_core::MacAddr;

/// A random locally administered unicast MAC, from the kernel's random UUID source.
pub(crate) fn random() -> MacAddr {
    let mut b = [0u8; 6];
    if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
        let hex: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(u8::is_ascii_hexdigit)
            .collect();
        for (i, pair) in hex.chunks(2).take(6).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("0");
            b[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    MacAddr(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let a = super::random();
        let b = super::random();
        assert_eq!(a.0[0] & 0x03, 0x02, "{a}");
        assert_ne!(a, b);
    }
}
