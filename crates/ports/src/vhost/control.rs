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
use std::os::fd::AsFd;

use vhost::vhost_user::message::VhostUserVirtioFeatures;
use vhost::vhost_user::{BackendReqHandler, Error as VuError};

use super::VhostMode;
use super::backend::{Session, Shared};
use crate::error::PortError;
use crate::qemu::free_path;
use crate::sys;

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
            let l = UnixListener::bind(path).map_err(|e| PortError::io(name, "bind", e))?;
            let dup = l.try_clone().map_err(|e| PortError::io(name, "dup", e))?;
            shared.set_listener(dup.into());
            Side::Server(l)
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
        shared.begin(stream.try_clone().ok());
        tracing::info!(port = %name, "vhost-user frontend connected");
        // A second handle on the socket, to look at requests before `vhost` reads them.
        let mut probe = stream.try_clone().ok();
        let session = Arc::new(Mutex::new(Session::new(shared.clone())));
        let mut handler = BackendReqHandler::from_stream(stream, session);
        let why = loop {
            // The next request's header and first body word, looked at without taking
            // them, for the one request `vhost` refuses without reading it out to us.
            let mut next = [0u8; 20];
            let seen = probe
                .as_ref()
                .and_then(|s| sys::peek(s.as_fd(), &mut next).ok())
                .unwrap_or(0);
            match handler.handle_request() {
                Ok(()) => {}
                // QEMU's virtio-net enables its rings before it sets features, and waits
                // for the answer; `vhost` refuses that request without giving one. Carry
                // it out (as `Session::set_vring_enable` would) and answer as asked.
                Err(VuError::InactiveFeature(f))
                    if f == VhostUserVirtioFeatures::PROTOCOL_FEATURES
                        && seen == next.len()
                        && word(&next, 0) == SET_VRING_ENABLE =>
                {
                    shared.enable(word(&next, 12), word(&next, 16) == 1);
                    if word(&next, 4) & NEED_REPLY != 0
                        && let Some(s) = &mut probe
                    {
                        let _ = s.write_all(&enable_ack());
                    }
                }
                // The message was read whole and refused; the connection goes on.
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

/// `VHOST_USER_SET_VRING_ENABLE`, and the header flag asking for an answer.
const SET_VRING_ENABLE: u32 = 18;
const NEED_REPLY: u32 = 0x8;

/// The little-endian 32-bit word at `at` of a message.
fn word(m: &[u8; 20], at: usize) -> u32 {
    u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]])
}

/// The answer "done" to a `SET_VRING_ENABLE`: a reply header (version 1, reply flag)
/// and a 64-bit zero.
fn enable_ack() -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
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
