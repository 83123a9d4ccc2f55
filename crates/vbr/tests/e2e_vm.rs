//! Real guests on vbridge: a Linux VM under QEMU (TCG) whose NIC is a TAP QEMU makes
//! (`-netdev tap`, `vhost=off`; libvirt's `<interface type='ethernet'>`), added to a
//! bridge with `vbr addif`, as the seed tutorials do with `brctl addif`. The guest pings
//! a namespace on the same bridge, its MAC shows in `showmacs`, and its flows take the
//! kernel fast path (a TAP someone else holds is an interface port).

mod common;

use std::time::Duration;

use common::guest::{Guest, carries_on_after_a_restart, lab, nic_args};
use common::*;

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, TAP, QEMU")]
fn a_guest_on_a_qemu_tap_reaches_a_namespace() {
    require_root();
    let (host, mut d, _ns) = lab("10.51.0.1/24");
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

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn guests_on_stream_and_dgram_ports_reach_each_other_and_a_namespace() {
    require_root();
    let (host, mut d, _ns) = lab("10.52.0.1/24");
    let (ma, mb) = ("52:54:00:52:00:0a", "52:54:00:52:00:0b");
    let a = d.json(&format!("port add br0 vma --type stream --mac {ma}"));
    let b = d.json(&format!("port add br0 vmb --type dgram --mac {mb}"));
    assert!(
        a["socket"].as_str().unwrap().ends_with("/vm/vma.sock"),
        "{a}"
    );
    // What `vbr port add` prints is what QEMU is given.
    let script = |peer: &str| {
        format!(
            "sleep 1; ping -c 3 -W 3 10.52.0.1 && ping -c 3 -W 3 {peer} && echo PINGED && sleep 6"
        )
    };
    let mut ga = Guest::boot_with(&host, &nic_args(&a), "10.52.0.10/24", &script("10.52.0.11"));
    let mut gb = Guest::boot_with(&host, &nic_args(&b), "10.52.0.11/24", &script("10.52.0.10"));
    for g in [&ga, &gb] {
        assert!(
            g.wait_for("PINGED", Duration::from_secs(90)),
            "a guest's pings failed:\n{}",
            g.console()
        );
    }
    let macs = d.ok("showmacs br0");
    assert!(macs.contains(ma) && macs.contains(mb), "{macs}");
    let shown = d.ok("show br0");
    assert!(shown.contains("vma") && shown.contains("vmb"), "{shown}");
    for g in [&mut ga, &mut gb] {
        let (out, status) = g.finish(Duration::from_secs(30));
        assert_eq!(status, 0, "{out}");
    }
    // The ports stay (listening) after the guests are gone, and go with `port del`.
    d.ok("port del br0 vma");
    d.ok("port del br0 vmb");
    assert!(!std::path::Path::new(a["socket"].as_str().unwrap()).exists());
    assert!(d.alive(), "{}", d.log());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn a_stream_guest_keeps_its_network_across_a_daemon_kill_and_restart() {
    require_root();
    let (host, mut d, _ns) = lab("10.53.0.1/24");
    let p = d.json("port add br0 vmr --type stream --mac 52:54:00:53:00:0a");
    // The guest pings for as long as the test needs, saying each success.
    let script = "i=0; while [ $i -lt 400 ]; do i=$((i+1)); \
                  ping -c 1 -W 1 10.53.0.1 >/dev/null && echo OK$i; sleep 0.2; done";
    let g = Guest::boot_with(&host, &nic_args(&p), "10.53.0.10/24", script);
    assert!(
        g.wait_for("OK", Duration::from_secs(90)),
        "the guest never reached the namespace:\n{}",
        g.console()
    );
    // kill -9: the guest's connection breaks; the restarted daemon listens again at the
    // same path (its port restored from the configuration), and QEMU reconnects.
    assert!(
        carries_on_after_a_restart(&mut d, &g),
        "the guest did not come back after the restart"
    );
    assert!(d.ok("showmacs br0").contains("52:54:00:53:00:0a"));
    drop(g);
    // A guest killed mid-transfer leaves the daemon and the port as they were.
    assert!(d.alive(), "{}", d.log());
    assert!(d.ok("show br0").contains("vmr"));
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn guests_in_different_vlans_of_one_subnet_stay_apart() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    // Guests in VLAN 10 and 20, and a namespace in each: one subnet.
    let ns = Netns::new("n");
    d.ok(&format!("connect {} br0 --ip 10.55.0.12/24", ns.name));
    d.ok(&format!("link set {} access 20", port_of(&ns.name, "eth0")));
    let ns10 = Netns::new("m");
    d.ok(&format!("connect {} br0 --ip 10.55.0.13/24", ns10.name));
    d.ok(&format!(
        "link set {} access 10",
        port_of(&ns10.name, "eth0")
    ));
    let a = d.json("port add br0 vm10 --type stream --mac 52:54:00:55:00:0a");
    let b = d.json("port add br0 vm20 --type stream --mac 52:54:00:55:00:0b");
    d.ok("link set vm10 access 10");
    d.ok("link set vm20 access 20");
    let mut ga = Guest::boot_with(
        &host,
        &nic_args(&a),
        "10.55.0.10/24",
        "sleep 1; ping -c 3 -W 2 10.55.0.13 >/dev/null && echo SAME-VLAN; \
         ping -c 3 -W 2 10.55.0.11 >/dev/null && echo REACHED-B; \
         ping -c 3 -W 2 10.55.0.12 >/dev/null && echo REACHED-C; echo DONE",
    );
    let mut gb = Guest::boot_with(
        &host,
        &nic_args(&b),
        "10.55.0.11/24",
        "sleep 1; ping -c 3 -W 2 10.55.0.12 >/dev/null && echo REACHED-C; sleep 8",
    );
    let (outa, _) = ga.finish(Duration::from_secs(90));
    let (outb, _) = gb.finish(Duration::from_secs(90));
    assert!(
        outb.contains("REACHED-C"),
        "VLAN 20 guest reaches VLAN 20: {outb}"
    );
    assert!(
        outa.contains("SAME-VLAN"),
        "the VLAN 10 guest reaches VLAN 10: {outa}"
    );
    assert!(
        outa.contains("DONE") && !outa.contains("REACHED"),
        "the VLAN 10 guest must reach nothing in VLAN 20: {outa}"
    );
    assert!(d.alive(), "{}", d.log());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, QEMU")]
fn a_guest_gets_its_address_from_vbridges_dhcp() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    let br = uniq("b");
    let topo = d.dir.join("vm-dhcp.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[[bridge]]
name = "{br}"
addresses = ["10.54.0.1/24"]
[bridge.dhcp]
range = "10.54.0.100-10.54.0.110"
lease = 600
"#
        ),
    )
    .unwrap();
    d.ok(&format!("up {}", topo.display()));
    let p = d.json(&format!(
        "port add {br} vmd --type stream --mac 52:54:00:54:00:0a"
    ));
    // busybox udhcpc with a script that applies the lease; then the gateway is pinged.
    let script = r#"cat > /tmp/u.sh <<'X'
#!/bin/sh
case "$1" in
  bound|renew) ip addr add "$ip/$mask" dev "$interface"; echo "LEASE $ip" ;;
esac
X
chmod +x /tmp/u.sh
udhcpc -i eth0 -n -q -f -t 10 -T 2 -s /tmp/u.sh && ping -c 3 -W 2 10.54.0.1"#;
    let mut g = Guest::boot_with(&host, &nic_args(&p), "", script);
    let (out, status) = g.finish(Duration::from_secs(90));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("LEASE 10.54.0.1"), "{out}");
    let leases = d.ok(&format!("dhcp leases {br}"));
    assert!(leases.contains("52:54:00:54:00:0a"), "{leases}");
    assert!(d.alive(), "{}", d.log());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, TAP, QEMU")]
fn a_guest_on_a_tap_vbridge_made_reaches_a_namespace_in_the_kernel() {
    require_root();
    let (host, mut d, _ns) = lab("10.56.0.1/24");
    let tap = uniq("t");
    let p = d.json(&format!(
        "port add br0 {tap} --type tap --mac 52:54:00:56:00:0a"
    ));
    assert!(host.exec(&format!("ip link show {tap}")).status.success());
    let g = Guest::boot_with(
        &host,
        &nic_args(&p),
        "10.56.0.10/24",
        "sleep 1; ping -c 100 -i 0.01 -q 10.56.0.1 && echo PINGED; i=0; \
         while [ $i -lt 300 ]; do i=$((i+1)); ping -c 1 -W 1 10.56.0.1 >/dev/null && echo OK$i; \
         sleep 0.2; done",
    );
    assert!(
        g.wait_for("PINGED", Duration::from_secs(90)),
        "the guest's pings failed:\n{}",
        g.console()
    );
    assert!(
        eventually(
            Duration::from_secs(4),
            || d.json("stats br0")[0]["fast_frames"].as_u64().unwrap() > 0
        ),
        "the guest's flows took the kernel fast path: {}",
        d.json("stats br0")
    );
    // A daemon restart finds its TAP (QEMU holds the queue) and the guest carries on.
    assert!(
        carries_on_after_a_restart(&mut d, &g),
        "the guest did not carry on after the restart"
    );
    drop(g);
    // The TAP is vbridge's: it stays while the port does, and goes with it.
    assert!(host.exec(&format!("ip link show {tap}")).status.success());
    d.ok(&format!("port del br0 {tap}"));
    assert!(
        eventually(Duration::from_secs(3), || !host
            .exec(&format!("ip link show {tap}"))
            .status
            .success()),
        "the TAP went with its port"
    );
    assert!(d.alive(), "{}", d.log());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces")]
fn garbage_on_a_stream_socket_is_cut_off_and_counted() {
    use std::io::Write;
    require_root();
    let (_host, mut d, _ns) = lab("10.57.0.1/24");
    let p = d.json("port add br0 vmg --type stream");
    let path = p["socket"].as_str().unwrap().to_owned();
    let drops = |d: &Daemon| {
        d.json("stats br0")[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "vmg")
            .unwrap()["backend_drops"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(drops(&d), 0);
    // A length of 0 is no frame: the connection is cut off and counted.
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.write_all(&[0, 0, 0, 0, 0xde, 0xad]).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || drops(&d) == 1),
        "{}",
        d.json("stats br0")
    );
    // The port listens on: the next connection is taken, and the daemon is fine.
    let mut again = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut f = vec![0xffu8; 6];
    f.extend([0x02, 0, 0, 0, 0x57, 0x0b, 0x08, 0x06]);
    f.resize(60, 0);
    again.write_all(&60u32.to_be_bytes()).unwrap();
    again.write_all(&f).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || d
            .ok("showmacs br0")
            .contains("02:00:00:00:57:0b")),
        "the next guest's frame was taken: {}",
        d.ok("showmacs br0")
    );
    assert_eq!(drops(&d), 1);
    assert!(d.alive(), "{}", d.log());
}
