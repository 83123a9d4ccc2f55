//! Harness for vbr's end-to-end tests: throw-away network namespaces (one stands in for
//! "the host", so nothing touches the real host's links or routes), a daemon running
//! inside it, and helpers to run commands there. Everything made is removed on drop,
//! pass or fail.
#![allow(dead_code, unreachable_pub)]

pub mod guest;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Fails the test unless it runs as root. Privileged tests are marked
/// `#[cfg_attr(vbr_unprivileged, ignore = ...)]`: built without root they show as
/// ignored; this catches a test binary built as root and run as another user.
pub fn require_root() {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user of this process.
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    assert_eq!(
        uid, 0,
        "this privileged test needs root, but runs as uid {uid}: the test binary was built as root; rebuild it as this user to have it ignored"
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A short unique name (at most 15 characters): `v<pid><tag><n>`.
pub fn uniq(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let s = format!("v{}{}{}", std::process::id() % 100_000, tag, n);
    assert!(s.len() <= 15, "name {s} too long");
    s
}

/// Runs a command line through `sh -c`.
pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs")
}

/// Runs a command line and panics with its output if it fails.
pub fn ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = uniq(tag);
        ok(&format!("ip netns add {name}"));
        ok(&format!("ip -n {name} link set lo up"));
        Netns { name }
    }

    /// A namespace made by someone else (`vbr up`), deleted on drop all the same.
    #[allow(dead_code)]
    pub fn adopt(name: &str) -> Netns {
        Netns {
            name: name.to_owned(),
        }
    }

    /// `ip netns exec NAME <cmd>`.
    pub fn exec(&self, cmd: &str) -> Output {
        sh(&format!("ip netns exec {} {cmd}", self.name))
    }

    /// Like `exec`, panicking on failure; returns stdout.
    pub fn ok(&self, cmd: &str) -> String {
        ok(&format!("ip netns exec {} {cmd}", self.name))
    }

    /// Whether `ping -c1` to `ip` succeeds from here.
    pub fn ping(&self, ip: &str) -> bool {
        self.exec(&format!("ping -c1 -W1 {ip}")).status.success()
    }

    /// Pings until it answers (ARP and learning take a moment), up to 5 s.
    pub fn reaches(&self, ip: &str) -> bool {
        eventually(Duration::from_secs(5), || self.ping(ip))
    }

    /// Starts a one-test iperf3 server on `ip` here, in the background, and returns once
    /// it listens (it forks before it binds).
    #[allow(dead_code)] // not every test file runs iperf3
    pub fn iperf3_server(&self, ip: &str) {
        self.ok(&format!("iperf3 -s -1 -D -B {ip}"));
        self.wait_listening(&format!("{ip}:5201"));
    }

    /// Waits (up to 10 s) until a TCP socket here listens on `addr` (`IP:PORT`, or
    /// `:PORT` for any address); panics if none does.
    #[allow(dead_code)]
    pub fn wait_listening(&self, addr: &str) {
        let listening = eventually(Duration::from_secs(10), || {
            self.ok("ss -Hltn").contains(addr)
        });
        assert!(listening, "nothing listened on {addr} in {}", self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns pids {} | xargs -r kill -9", self.name));
        let _ = sh(&format!("ip netns del {}", self.name));
    }
}

/// The `vbr` binary under test.
pub fn vbr_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vbr")
}

/// A vbr daemon running inside namespace `host`, with its own socket and state dir.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub host: String,
    /// Environment variables set for the daemon.
    env: Vec<(String, String)>,
    /// A command the daemon runs under (`prlimit --nofile=...`, say).
    pub prefix: Vec<String>,
    /// More arguments for `vbr daemon` (`--metrics ...`).
    pub args: Vec<String>,
}

impl Daemon {
    /// Starts a daemon in `host` with a fresh state directory.
    pub fn start(host: &Netns) -> Daemon {
        Daemon::start_with_env(host, &[])
    }

    /// [`Daemon::start`] with these environment variables set for the daemon.
    pub fn start_with_env(host: &Netns, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::new(host, env);
        d.spawn();
        d
    }

    /// A daemon that is not started yet (see [`Daemon::spawn`]).
    pub fn new(host: &Netns, env: &[(&str, &str)]) -> Daemon {
        let dir = std::env::temp_dir().join(format!("vbr-test-{}", uniq("d")));
        std::fs::create_dir_all(&dir).unwrap();
        Daemon {
            child: None,
            socket: dir.join("vbr.sock"),
            dir,
            host: host.name.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            prefix: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Sets the daemon's environment for its next start.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Starts the daemon process (again) with the same state.
    pub fn spawn(&mut self) {
        self.spawn_only();
        let up = eventually(Duration::from_secs(10), || {
            self.socket.exists() && self.vbr("show").status.success()
        });
        assert!(up, "daemon did not come up:\n{}", self.log());
    }

    /// Starts the daemon process without waiting for it (its log: [`Daemon::log`]).
    pub fn spawn_only(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        // nsenter enters only the network namespace; `ip netns exec` would also give the
        // daemon a private mount namespace, hiding the namespaces it mounts under
        // /run/netns from everyone else.
        // Found on our PATH (the daemon's may be set to something else).
        let nsenter = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|d| PathBuf::from(d).join("nsenter"))
            .find(|p| p.exists())
            .expect("nsenter on PATH");
        let child = Command::new(nsenter)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg(format!("--net=/run/netns/{}", self.host))
            .args(&self.prefix)
            .args([vbr_bin(), "daemon"])
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        self.child = Some(child);
    }

    /// Waits up to `t` for the daemon process to end; its exit code.
    pub fn wait_exit(&mut self, t: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let end = Instant::now() + t;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return st.code().or(Some(128));
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the daemon with SIGKILL (no cleanup at all).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the daemon process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs `vbr <args>` against this daemon.
    pub fn vbr(&self, args: &str) -> Output {
        sh(&format!(
            "{} --socket {} {args}",
            vbr_bin(),
            self.socket.display()
        ))
    }

    /// Runs `vbr <args>`, panicking on failure; returns stdout.
    pub fn ok(&self, args: &str) -> String {
        let out = self.vbr(args);
        assert!(
            out.status.success(),
            "`vbr {args}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Endpoints `(tag, host end, ns end, address)` joined to `host` and attached to br0.
    pub fn endpoints(&self, host: &Netns, specs: &[(&str, &str, &str, &str)]) -> Vec<Endpoint> {
        specs
            .iter()
            .map(|(tag, host_end, ns_end, addr)| {
                let e = Endpoint::new(host, tag, host_end, ns_end, addr);
                self.ok(&format!("addif br0 {host_end}"));
                e
            })
            .collect()
    }

    /// `vbr --json <args>` parsed.
    pub fn json(&self, args: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&format!("--json {args}"))).expect("JSON output")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = sh(&format!("kill -TERM {}", c.id()));
            let stopped = eventually(Duration::from_secs(5), || {
                c.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A namespace joined to the "host" namespace by a veth pair: `host_end` stays in
/// `host`, `ns_end` goes into the new namespace with `addr`, up.
pub struct Endpoint {
    pub ns: Netns,
    pub host_end: String,
}

impl Endpoint {
    pub fn new(host: &Netns, tag: &str, host_end: &str, ns_end: &str, addr: &str) -> Endpoint {
        let ns = Netns::new(tag);
        host.ok(&format!(
            "ip link add {host_end} type veth peer name {ns_end}"
        ));
        host.ok(&format!("ip link set {ns_end} netns {}", ns.name));
        ns.ok(&format!("ip addr add {addr} dev {ns_end}"));
        ns.ok(&format!("ip link set {ns_end} up"));
        Endpoint {
            ns,
            host_end: host_end.to_owned(),
        }
    }

    /// The MAC of `dev` inside the endpoint's namespace.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ns.ok(&format!("cat /sys/class/net/{dev}/address"));
        out.trim().to_owned()
    }
}

/// Port `port` of `bridge` as `vbr --json show` gives it.
pub fn port_json(d: &Daemon, bridge: &str, port: &str) -> serde_json::Value {
    let v = d.json(&format!("show {bridge}"));
    v[0]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == port))
        .cloned()
        .unwrap_or_else(|| panic!("no port {port} in {v}"))
}

/// Received (packets, bytes) of port `port` on `bridge`.
pub fn rx_counters(d: &Daemon, bridge: &str, port: &str) -> (u64, u64) {
    let p = port_json(d, bridge, port);
    let c = &p["counters"];
    (
        c["rx_packets"].as_u64().unwrap_or(0),
        c["rx_bytes"].as_u64().unwrap_or(0),
    )
}

/// The bridge port `vbr connect NETNS BRIDGE --ifname IFNAME` makes (the rule is
/// unit-tested in vbridge-datapath).
pub fn port_of(netns: &str, ifname: &str) -> String {
    vbridge_datapath::port_name(netns, ifname)
}

/// A namespace "outside" the host namespace `host`: a veth pair from `host` (10.77.0.1)
/// to it (10.77.0.2), its default route through the host.
#[allow(dead_code)]
pub fn outside(host: &Netns) -> Netns {
    let o = Netns::new("o");
    let dev = uniq("x");
    ok(&format!(
        "ip -n {} link add {dev} type veth peer name eth0 netns {}",
        host.name, o.name
    ));
    host.ok(&format!("ip addr add 10.77.0.1/24 dev {dev}"));
    host.ok(&format!("ip link set {dev} up"));
    o.ok("ip addr add 10.77.0.2/24 dev eth0");
    o.ok("ip link set eth0 up");
    o.ok("ip route add default via 10.77.0.1");
    o
}

#[allow(dead_code)]
/// What tcpdump in `ns` (`args`: interface and filter) printed while `f` ran; it is
/// stopped with SIGINT afterwards (it prints what it has), unless `-c` ended it before.
pub fn tcpdump_while(ns: &Netns, args: &[&str], f: impl FnOnce()) -> String {
    let dump = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "timeout", "20", "tcpdump", "-n", "-l",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on ..." once its capture is open; the rest of its stderr
    // is drained to its end.
    let mut dump = dump;
    let err = dump.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(err)).map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "tcpdump {args:?} never started listening in {}",
        ns.name
    );
    f();
    std::thread::sleep(Duration::from_millis(300));
    sh(&format!(
        "ip netns pids {} | xargs -r ps -o pid=,comm= -p | awk '$2 == \"tcpdump\" {{print $1}}' | xargs -r kill -INT",
        ns.name
    ));
    String::from_utf8_lossy(&dump.wait_with_output().unwrap().stdout).into_owned()
}
