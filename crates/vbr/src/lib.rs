//! `vbr`: the vbridge daemon (`vbr daemon`), its brctl-compatible client ([`run`]), and
//! `vbr-cni`, its CNI plugin ([`cni::main`]). The binaries are thin calls into here.

mod api;
mod cli;
mod client;
mod cluster;
pub mod cni;
mod daemon;
mod diagram;
mod logging;
mod mac;
mod names;
mod output;
mod top;
mod topology;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Cmd};

/// `vbr`: parses the command line and runs the command; the exit code says how it went.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Daemon {
        state_dir,
        metrics,
        cluster,
        node,
        underlay,
        lease_ttl,
    } = &cli.cmd
    {
        logging::init();
        let cluster = match (node, underlay) {
            (Some(node), Some(underlay)) if !cluster.is_empty() => Some(cluster::Options {
                endpoints: cluster.clone(),
                node: node.clone(),
                underlay: *underlay,
                lease_ttl: *lease_ttl,
            }),
            _ => None,
        };
        let opts = daemon::Options {
            socket: cli.socket.clone(),
            state_dir: state_dir.clone(),
            metrics: *metrics,
            cluster,
        };
        return match daemon::run(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("vbr daemon: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Top { bridge } = &cli.cmd {
        return match top::run(&cli.socket, bridge.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vbr: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Cluster(cli::ClusterCmd::Simulate {
        etcd,
        nodes,
        networks,
        rounds,
    }) = &cli.cmd
    {
        let args = cluster::sim::SimArgs {
            endpoints: etcd.clone(),
            nodes: *nodes,
            networks: *networks,
            rounds: *rounds,
        };
        return match cluster::sim::run(&args) {
            Ok(r) => {
                output::sim_report(&r, cli.json);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vbr cluster simulate: {e}");
                ExitCode::from(1)
            }
        };
    }
    let req = match cli.cmd.request() {
        Ok(Some(r)) => r,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vbr: {e:#}");
            return ExitCode::from(2);
        }
    };
    let line = match client::encode(&req) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vbr: {e:#}");
            return ExitCode::from(2);
        }
    };
    if matches!(req, api::Request::Up { .. }) {
        if let Err(e) = client::ensure_daemon(&cli.socket) {
            eprintln!("vbr: {e:#}");
            return ExitCode::from(3);
        }
    }
    if req.streams() {
        return match watch::follow(
            &cli.socket,
            line,
            cli.json,
            matches!(req, api::Request::Capture { .. }),
        ) {
            Ok(end) => {
                if cli.json {
                    output::say!("{}", serde_json::json!({ "end": end }));
                } else {
                    eprintln!(
                        "vbr: {} {}{}",
                        end.frames,
                        if matches!(req, api::Request::Capture { .. }) {
                            "frames captured"
                        } else {
                            "decisions shown"
                        },
                        if end.dropped > 0 {
                            format!(", {} dropped (the reader was too slow)", end.dropped)
                        } else {
                            String::new()
                        }
                    );
                }
                match (end.why.as_str(), end.error) {
                    (_, Some(e)) => {
                        eprintln!("vbr: {}", names::escape_text(&e));
                        ExitCode::from(1)
                    }
                    ("gone", None) => {
                        eprintln!("vbr: the port or bridge went away");
                        ExitCode::from(1)
                    }
                    _ => ExitCode::SUCCESS,
                }
            }
            Err(e) => {
                eprintln!("vbr: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let shows = matches!(req, api::Request::Up { .. });
    match client::send(&cli.socket, line) {
        Ok(resp) if resp.ok => {
            let v = resp.result.unwrap_or(serde_json::Value::Null);
            if cli.json {
                output::say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if let Some(f) = cli.cmd.show_format() {
                match serde_json::from_value::<Vec<vbridge_datapath::BridgeView>>(v) {
                    Ok(b) if f == cli::ShowFormat::Dot => {
                        output::say!("{}", diagram::dot(&b).trim_end())
                    }
                    Ok(b) => output::say!("{}", diagram::text(&b).trim_end()),
                    Err(e) => {
                        eprintln!("vbr: the daemon's answer is not what this vbr expects: {e}");
                        return ExitCode::from(3);
                    }
                }
            } else if let Err(e) = output::print(&req, &v) {
                eprintln!("vbr: {e}");
                return ExitCode::from(3);
            }
            if shows && !cli.json {
                let show = api::Request::Show { bridge: None };
                if let Ok(r) = client::call(&cli.socket, &show) {
                    let _ = output::print(&show, &r.result.unwrap_or_default());
                }
            }
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            let e = resp.error.unwrap_or_else(|| {
                api::ApiError::new(api::ErrorKind::Unavailable, "request failed")
            });
            if cli.json {
                output::say!("{}", serde_json::json!({ "error": e }));
            }
            eprintln!("vbr: {}", names::escape_text(&e.message));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("vbr: {e:#}");
            ExitCode::from(3)
        }
    }
}
