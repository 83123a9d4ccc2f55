//! A real container runtime on vbridge: Debian's Podman (CNI backend, runc) runs
//! containers from a local root filesystem (busybox, no registry) on a network whose
//! plugin is `vbr-cni`, with `host-local` IPAM. Two containers ping each other and the
//! host, a published port answers from the host, and `podman rm` removes the port and
//! its rule. Podman runs inside a throw-away host namespace with the daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// Podman with its own storage, configuration and network directory, run in `host`.
struct Podman {
    host: String,
    dir: PathBuf,
}

impl Podman {
    fn new(host: &Netns, d: &Daemon, bridge: &str) -> Podman {
        let dir = d.dir.join("podman");
        let plugins = dir.join("plugins");
        let nets = dir.join("net");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::create_dir_all(&nets).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vbr-cni"), plugins.join("vbridge")).unwrap();
        let conf = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "vbrtest",
            "plugins": [{
                "type": "vbridge",
                "bridge": bridge,
                "isGateway": true,
                "isDefaultGateway": true,
                "ipMasq": true,
                "socket": d.socket,
                "vbr": vbr_bin(),
                "capabilities": { "portMappings": true },
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": "10.92.0.0/24", "gateway": "10.92.0.1" }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("ipam"),
                },
            }],
        });
        std::fs::write(nets.join("vbrtest.conflist"), conf.to_string()).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
                plugins.display(),
                nets.display()
            ),
        )
        .unwrap();
        rootfs(&dir.join("rootfs"));
        Podman {
            host: host.name.clone(),
            dir,
        }
    }

    fn run(&self, args: &str) -> Output {
        sh(&format!(
            "CONTAINERS_CONF={dir}/containers.conf nsenter --net=/run/netns/{host} podman --root {dir}/root --runroot {dir}/run --storage-driver vfs --runtime runc {args}",
            dir = self.dir.display(),
            host = self.host
        ))
    }

    fn ok(&self, args: &str) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A container from the busybox root filesystem on the vbridge network.
    fn start(&self, name: &str, extra: &str, cmd: &str) {
        self.ok(&format!(
            "run -d --name {name} --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network vbrtest {extra} --rootfs {}/rootfs {cmd}",
            self.dir.display()
        ));
    }

    fn ip_of(&self, name: &str) -> String {
        let out = self.ok(&format!("exec {name} ip -4 -o addr show eth0"));
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run("rm -a -f -t 0");
    }
}

/// A root filesystem with busybox and the libraries it links.
fn rootfs(root: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ok("command -v busybox").trim().to_owned();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for lib in ok(&format!("ldd {busybox}")).split_whitespace() {
        if lib.starts_with('/') {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, to).unwrap();
        }
    }
    for applet in ["sh", "ping", "httpd", "ip", "sleep", "wget"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), "served by a podman container").unwrap();
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: podman, network namespaces, veth, nftables"
)]
fn podman_containers_on_a_vbridge_network() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let bridge = uniq("pd");
    let p = Podman::new(&host, &d, &bridge);
    let (c1, c2) = (uniq("web"), uniq("box"));
    p.start(&c1, "-p 8080:80", "/bin/httpd -f -p 80 -h /www");
    p.start(&c2, "", "/bin/sleep 600");
    let (ip1, ip2) = (p.ip_of(&c1), p.ip_of(&c2));
    assert!(
        ip1.starts_with("10.92.0.") && ip2.starts_with("10.92.0."),
        "{ip1} {ip2}"
    );
    assert!(
        p.run(&format!("exec {c2} ping -c 1 -W 2 {ip1}"))
            .status
            .success(),
        "container to container"
    );
    assert!(
        p.run(&format!("exec {c1} ping -c 1 -W 2 10.92.0.1"))
            .status
            .success(),
        "container to the host"
    );
    assert!(host.reaches(&ip2), "the host to a container");
    let page = host.exec("timeout 5 busybox wget -q -O - http://10.92.0.1:8080/");
    assert_eq!(
        String::from_utf8_lossy(&page.stdout),
        "served by a podman container",
        "the published port"
    );
    let shown = d.ok(&format!("show {bridge}"));
    let ports = shown.lines().count();
    p.ok(&format!("rm -f -t 0 {c1}"));
    assert_eq!(
        d.ok(&format!("show {bridge}")).lines().count(),
        ports - 1,
        "podman rm removed the port"
    );
    let rules = host.ok(&format!("nft list table ip vbridge_{bridge}"));
    assert!(!rules.contains("dnat"), "and its published port:\n{rules}");
    assert!(host.reaches(&ip2), "the other container stays");
    p.ok(&format!("rm -f -t 0 {c2}"));
}
