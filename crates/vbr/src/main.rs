//! `vbr`: the vbridge daemon (`vbr daemon`) and its brctl-compatible client.

mod api;
mod cli;
mod client;
mod daemon;
mod output;
mod topology;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Daemon { state_dir } = &cli.cmd {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .init();
        let opts = daemon::Options {
            socket: cli.socket.clone(),
            state_dir: state_dir.clone(),
        };
        return match daemon::run(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vbr daemon: {e:#}");
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
    if matches!(req, api::Request::Up { .. }) {
        if let Err(e) = client::ensure_daemon(&cli.socket) {
            eprintln!("vbr: {e:#}");
            return ExitCode::from(3);
        }
    }
    let shows = matches!(req, api::Request::Up { .. });
    match client::call(&cli.socket, &req) {
        Ok(resp) if resp.ok => {
            let v = resp.result.unwrap_or(serde_json::Value::Null);
            if cli.json {
                output::say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                output::print(&req, &v);
            }
            if shows && !cli.json {
                let show = api::Request::Show { bridge: None };
                if let Ok(r) = client::call(&cli.socket, &show) {
                    output::print(&show, &r.result.unwrap_or_default());
                }
            }
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            let msg = resp.error.unwrap_or_else(|| "request failed".into());
            if cli.json {
                output::say!("{}", serde_json::json!({ "error": msg }));
            }
            eprintln!("vbr: {msg}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("vbr: {e:#}");
            ExitCode::from(3)
        }
    }
}
