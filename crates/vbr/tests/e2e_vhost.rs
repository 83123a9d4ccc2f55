//! Real guests on vhost-user ports (`vbr port add --type vhost-user`): vbridge is the
//! backend of each guest's virtio-net, the rings in the guest's shared memory. A guest
//! over vhost-user and one over a stream socket ping each other and a namespace; a guest
//! whose QEMU listens (`--client`) keeps its network across a daemon `kill -9`; a guest
//! killed mid-transfer leaves the daemon and its port as they were.

mod common;

use std::time::Duration;

use common::guest::{Guest, carries_on_after_a_restart, lab, nic_args};
use common::*;

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn guests_on_vhost_user_and_stream_ports_reach_each_other_and_a_namespace() {
    require_root();
    let (host, mut d, ns) = lab("10.57.0.1/24");
    let (ma, mb) = ("52:54:00:57:00:0a", "52:54:00:57:00:0b");
    let a = d.json(&format!("port add br0 vhu --type vhost-user --mac {ma}"));
    let b = d.json(&format!("port add br0 vms --type stream --mac {mb}"));
    assert!(
        a["socket"].as_str().unwrap().ends_with("/vm/vhu.sock"),
        "{a}"
    );
    let script = |peer: &str| {
        format!(
            "sleep 1; ping -c 3 -W 3 10.57.0.1 && ping -c 3 -W 3 {peer} && echo PINGED && sleep 8"
        )
    };
    let mut ga = Guest::boot_with(&host, &nic_args(&a), "10.57.0.10/24", &script("10.57.0.11"));
    let mut gb = Guest::boot_with(&host, &nic_args(&b), "10.57.0.11/24", &script("10.57.0.10"));
    for g in [&ga, &gb] {
        assert!(
            g.wait_for("PINGED", Duration::from_secs(90)),
            "a guest's pings failed:\n{}\ndaemon:\n{}",
            g.console(),
            d.log()
        );
    }
    let macs = d.ok("showmacs br0");
    assert!(macs.contains(ma) && macs.contains(mb), "{macs}");
    // Big frames cross too: 20 pings of 8000 bytes from the namespace (fragments the
    // guest reassembles, answered in fragments over the same rings).
    let out = ns.ok("ping -c 20 -i 0.05 -s 8000 -W 3 10.57.0.10");
    assert!(out.contains(" 0% packet loss"), "{out}");
    let shown = d.ok("show br0");
    assert!(shown.contains("vhu"), "{shown}");
    let port = port_json(&d, "br0", "vhu");
    assert_eq!(port["kind"], "vhost_user", "{port}");
    assert!(
        port["counters"]["rx_packets"].as_u64().unwrap() > 20,
        "{port}"
    );
    for g in [&mut ga, &mut gb] {
        let (out, status) = g.finish(Duration::from_secs(30));
        assert_eq!(status, 0, "{out}");
    }
    d.ok("port del br0 vhu");
    assert!(!std::path::Path::new(a["socket"].as_str().unwrap()).exists());
    assert!(d.alive(), "{}", d.log());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn a_vhost_user_client_guest_keeps_its_network_across_a_daemon_kill() {
    require_root();
    let (host, mut d, _ns) = lab("10.58.0.1/24");
    let p = d.json("port add br0 vhc --type vhost-user --client --mac 52:54:00:58:00:0a");
    let args = nic_args(&p);
    assert!(args.iter().any(|a| a.ends_with(",server=on")), "{args:?}");
    // The guest pings for as long as the test needs, saying each success.
    let script = "i=0; while [ $i -lt 600 ]; do i=$((i+1)); \
                  ping -c 1 -W 1 10.58.0.1 >/dev/null && echo OK$i; sleep 0.2; done";
    let g = Guest::boot_with(&host, &args, "10.58.0.10/24", script);
    assert!(
        g.wait_for("OK", Duration::from_secs(90)),
        "the guest never reached the namespace:\n{}\ndaemon:\n{}",
        g.console(),
        d.log()
    );
    // kill -9: QEMU keeps listening; the restarted daemon restores the port from its
    // configuration and connects again; the guest's driver never notices.
    for round in 0..2 {
        assert!(
            carries_on_after_a_restart(&mut d, &g),
            "round {round}: the guest did not come back after the restart"
        );
    }
    assert!(d.ok("showmacs br0").contains("52:54:00:58:00:0a"));
    // A guest killed mid-transfer leaves the daemon and the port as they were.
    drop(g);
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.alive(), "{}", d.log());
    assert!(d.ok("show br0").contains("vhc"));
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn a_vhost_user_server_port_takes_its_guest_back_after_a_daemon_kill() {
    require_root();
    let (host, mut d, _ns) = lab("10.59.0.1/24");
    let p = d.json("port add br0 vhs --type vhost-user --mac 52:54:00:59:00:0a");
    let script = "i=0; while [ $i -lt 600 ]; do i=$((i+1)); \
                  ping -c 1 -W 1 10.59.0.1 >/dev/null && echo OK$i; sleep 0.2; done";
    let g = Guest::boot_with(&host, &nic_args(&p), "10.59.0.10/24", script);
    assert!(
        g.wait_for("OK", Duration::from_secs(90)),
        "the guest never reached the namespace:\n{}\ndaemon:\n{}",
        g.console(),
        d.log()
    );
    // QEMU reconnects (`reconnect-ms`) to the socket the restarted daemon listens on.
    assert!(
        carries_on_after_a_restart(&mut d, &g),
        "the guest did not come back"
    );
}
