//! A vhost-user port's control thread: one connection after another. As server it
//! waits for QEMU on a listening socket; as client it connects to QEMU's socket, again
//! each second while that fails, so a restarted daemon finds running guests. Each
//! connection's messages are parsed by the `vhost` crate and carried out by a
//! [`Session`]; the forwarding thread sees their effect through [`Shared`] only.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::Write;

use vhost::vhost_user::message::VhostUserVirtioFeatures;
use vhost::vhost_user::{BackendReqHandler, Error as VuError};

use super::VhostMode;
use super::backend::{Session, Shared};
use crate::error::PortError;
use crate::qemu::free_path;

/// Wait between attempts to reach QEMU's socket (client mode).
const RETRY: Duration = Duration::from_secs(1);

enum Side {
    Server(UnixListener),
    Client(PathBuf),
}

/// Starts the control thread of port `name` at `path`.
pub(crate) fn spawn(
    name: &str,
    path: &Path,
    mode: &VhostMode,
    shared: Arc<Shared>,
) -> Result<(), PortError> {
    let side = match mode {
        VhostMode::Server => {
            free_path(name, path)?;
            Side::Server(UnixListener::bind(path).map_err(|e| PortError::io(name, "bind", e))?)
        }
        VhostMode::Client => Side::Client(path.to_owned()),
    };
    std::thread::Builder::new()
        .name(format!("vhost-{name}"))
        .spawn(move || run(&side, &shared))
        .map(drop)
        .map_err(|e| PortError::io(name, "spawn the vhost-user thread", e))
}

fn run(side: &Side, shared: &Arc<Shared>) {
    let name = shared.name().to_owned();
    let mut conn = 0;
    let mut failing = false;
    while !shared.stopping() {
        let stream = match side {
            Side::Server(l) => l.accept().map(|(s, _)| s),
            Side::Client(p) => UnixStream::connect(p),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if !failing && !shared.stopping() {
                    tracing::info!(port = %name, error = %e, "vhost-user: no frontend yet; trying each second");
                }
                failing = true;
                pause(shared);
                continue;
            }
        };
        failing = false;
        if shared.stopping() {
            break;
        }
        conn += 1;
        shared.begin(conn, stream.try_clone().ok());
        tracing::info!(port = %name, "vhost-user frontend connected");
        let mut early = stream.try_clone().ok();
        let session = Arc::new(Mutex::new(Session::new(shared.clone())));
        let mut handler = BackendReqHandler::from_stream(stream, session.clone());
        let why = loop {
            match handler.handle_request() {
                Ok(()) => {}
                // QEMU's virtio-net enables its rings before it sets features and waits
                // for the answer; `vhost` refuses the request without giving one. Take
                // it as meant, and answer yes.
                Err(VuError::InactiveFeature(f))
                    if f == VhostUserVirtioFeatures::PROTOCOL_FEATURES =>
                {
                    let s = session.lock().unwrap_or_else(|p| p.into_inner());
                    s.enabled_early();
                    if s.reply_ack()
                        && let Some(s) = &mut early
                    {
                        let _ = s.write_all(&enable_ack());
                    }
                }
                // The message was read whole and refused; the connection goes on (QEMU
                // enables rings before it sets features, which `vhost` refuses).
                Err(
                    e @ (VuError::InactiveFeature(_)
                    | VuError::InactiveOperation(_)
                    | VuError::InvalidParam
                    | VuError::InvalidOperation(_)
                    | VuError::ReqHandlerError(_)),
                ) => tracing::debug!(port = %name, error = %e, "vhost-user request refused"),
                Err(e) => break e,
            }
        };
        shared.end();
        match why {
            VuError::Disconnected | VuError::PartialMessage | VuError::SocketBroken(_) => {
                tracing::info!(port = %name, "vhost-user frontend went away")
            }
            e => tracing::warn!(port = %name, error = %e, "vhost-user connection ended"),
        }
    }
}

/// The answer "done" to a `SET_VRING_ENABLE` (request 18): a reply header (version 1,
/// reply flag) and a 64-bit zero.
fn enable_ack() -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&18u32.to_le_bytes());
    m[4..8].copy_from_slice(&(0x1u32 | 0x4).to_le_bytes());
    m[8..12].copy_from_slice(&8u32.to_le_bytes());
    m
}

/// Waits before the next attempt, in short steps so a stop is seen soon.
fn pause(shared: &Shared) {
    for _ in 0..10 {
        if shared.stopping() {
            return;
        }
        std::thread::sleep(RETRY / 10);
    }
}
