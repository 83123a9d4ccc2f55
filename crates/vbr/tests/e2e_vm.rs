//! Real guests on vbridge: a Linux VM under QEMU (TCG) whose NIC is a TAP QEMU makes
//! (`-netdev tap`, `vhost=off`; libvirt's `<interface type='ethernet'>`), added to a
//! bridge with `vbr addif`, as the seed tutorials do with `brctl addif`. The guest pings
//! a namespace on the same bridge, its MAC shows in `showmacs`, and its flows take the
//! kernel fast path (a TAP someone else holds is an interface port).

mod common;

use std::time::Duration;

use common::guest::Guest;
use common::*;

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, TAP, QEMU")]
fn a_guest_on_a_qemu_tap_reaches_a_namespace() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let ns = Netns::new("n");
    d.ok(&format!("connect {} br0 --ip 10.51.0.1/24", ns.name));
    let tap = uniq("t");
    let mac = "52:54:00:51:00:0a";
    let mut g = Guest::boot(
        &host,
        &format!("tap,ifname={tap},script=no,downscript=no,vhost=off"),
        mac,
        "10.51.0.10/24",
        "sleep 1; ping -c 3 -W 3 10.51.0.1 && ping -c 200 -i 0.01 -q 10.51.0.1 && echo PINGED && sleep 4",
    );
    // QEMU makes the TAP before the guest boots; on the bridge it goes.
    assert!(
        eventually(Duration::from_secs(20), || host
            .exec(&format!("ip link show {tap}"))
            .status
            .success()),
        "QEMU made no TAP {tap}: {}",
        g.console()
    );
    d.ok(&format!("addif br0 {tap}"));
    // While the guest runs: its MAC on the bridge, its TAP on the fast path, and what
    // the kernel carried accounted within a housekeeping tick or two.
    assert!(
        g.wait_for("PINGED", Duration::from_secs(90)),
        "the guest's pings failed:\n{}",
        g.console()
    );
    assert!(
        d.ok("showmacs br0").contains(mac),
        "{}",
        d.ok("showmacs br0")
    );
    let stats = d.json("stats br0");
    let on_fast = stats[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == tap.as_str() && p["fast_path"] == true);
    assert!(on_fast, "{stats}");
    assert!(
        eventually(
            Duration::from_secs(4),
            || d.json("stats br0")[0]["fast_frames"].as_u64().unwrap() > 0
        ),
        "the guest's pings took the kernel fast path: {}",
        d.json("stats br0")
    );
    let (out, status) = g.finish(Duration::from_secs(30));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("3 packets received"), "{out}");
    assert!(d.alive(), "{}", d.log());
}
