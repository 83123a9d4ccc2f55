//! VLAN gateways and Neutron networks refused before anything changes when the host
//! does not fit them: a missing uplink is named by file, line and field; a device that
//! holds a gateway's or a patch's name and is not vbridge's is left alone. The working
//! cases run in `e2e_examples` (seed 003's VLAN router, seed 002's Neutron networks).

mod common;

use common::*;

fn links(host: &Netns) -> String {
    host.ok("ip -o link show | cut -d: -f2 | sort")
}

/// Writes `src` as a topology file in the daemon's directory.
fn topology(d: &Daemon, name: &str, src: &str) -> String {
    let path = d.dir.join(name);
    std::fs::write(&path, src).unwrap();
    path.display().to_string()
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces")]
fn a_missing_uplink_is_named_by_file_line_and_field() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let before = links(&host);
    let f = topology(
        &d,
        "flat.toml",
        "[[bridge]]\nname = \"fl0\"\n\n[[bridge]]\nname = \"fl1\"\ntype = \"flat\"\nuplink = \"nosuch0\"\n",
    );
    let out = d.vbr(&format!("up {f}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "{f}:7: bridge[1].uplink: nosuch0: no such network interface"
        )),
        "{err}"
    );
    assert_eq!(links(&host), before, "nothing made");
    assert!(d.ok("show").lines().count() <= 1, "no bridge");
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, veth")]
fn devices_of_others_keep_their_names() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    // Someone else's devices named like a VLAN gateway and like a network's patch.
    host.ok("ip link add gw0.10 type veth peer name other0");
    host.ok("ip link add up0 type veth peer name n5-up");
    let before = links(&host);
    let gw = topology(
        &d,
        "gw.toml",
        "[[bridge]]\nname = \"gw0\"\n[[bridge.vlan]]\nvid = 10\naddresses = [\"10.60.0.1/24\"]\n",
    );
    let out = d.vbr(&format!("up {gw}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("gw0.10 exists and is not vbridge's"),
        "{err}"
    );
    let vlan = topology(
        &d,
        "vlan.toml",
        "[[bridge]]\nname = \"n5\"\ntype = \"vlan\"\nuplink = \"up0\"\nsegmentation_id = 5\n",
    );
    let out = d.vbr(&format!("up {vlan}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("n5-up exists and is not vbridge's"),
        "{err}"
    );
    assert_eq!(links(&host), before, "nothing made, nothing taken");
    assert!(host.exec("ip link show gw0.10").status.success());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, veth")]
fn an_uplink_serves_the_networks_of_one_topology() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    host.ok("ip link add up1 type veth peer name up1p");
    let before = links(&host);
    let one = topology(
        &d,
        "one.toml",
        "[[bridge]]\nname = \"na\"\ntype = \"vlan\"\nuplink = \"up1\"\nsegmentation_id = 7\n",
    );
    let two = topology(
        &d,
        "two.toml",
        "[[bridge]]\nname = \"nb\"\ntype = \"vlan\"\nuplink = \"up1\"\nsegmentation_id = 8\n",
    );
    d.ok(&format!("up {one}"));
    d.ok(&format!("up {one}")); // again: nothing new
    let shown = d.ok("show");
    assert!(
        shown.contains("vbp-up1") && shown.contains("na-pv"),
        "{shown}"
    );
    let out = d.vbr(&format!("up {two}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("one topology"),
        "{err}"
    );
    assert!(!d.ok("show").contains("nb"), "nothing of two.toml made");
    d.ok(&format!("down {one}"));
    assert_eq!(links(&host), before, "the pair and bridges gone, up1 kept");
}
