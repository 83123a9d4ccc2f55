//! Carrying out [`Action`]s: bridges and ports added and removed with backends the
//! control side opened, settings, and the queries that answer with plain data. Every
//! refusal leaves the engine as it was and hands any backend back.

use std::sync::Arc;

use vbridge_core::{Bridge, BridgeConfig, PortId};

use super::{Engine, token};
use crate::action::{Action, Notice, Refused, Retired};
use crate::bridge_rt::{BridgeRt, PortSpec};
use crate::control::backend::Backend;
use crate::error::DpError;
use crate::fast::Fast;
use crate::observe::{Capture, Captured, Direction};
use crate::settings::{self, Change, Changed, Refusal};
use crate::view::PortKind;

fn refused(error: DpError, backend: Option<Backend>) -> Refused {
    Refused {
        error,
        backend: backend.map(Box::new),
    }
}

impl Engine {
    /// Carries out one action. An answer nobody waits for any more is dropped, except
    /// resources, which go to the control side to be closed.
    pub(super) fn act(&mut self, a: Action) {
        match a {
            Action::AddBridge {
                name,
                config,
                host,
                reply,
            } => {
                let r = self.add_bridge(&name, config, host);
                if let Err(std::sync::mpsc::SendError(Err(r))) = reply.send(r) {
                    self.unwanted(r.backend.map(|b| *b));
                }
            }
            Action::DelBridge { name, reply } => {
                let r = self.del_bridge(&name);
                if let Err(std::sync::mpsc::SendError(Ok(ports))) = reply.send(r) {
                    for port in ports {
                        self.notify(Notice::Retire {
                            port,
                            release: true,
                        });
                    }
                }
            }
            Action::AddPort {
                bridge,
                spec,
                backend,
                reply,
            } => {
                let r = self.add_port(&bridge, *spec, backend);
                if let Err(std::sync::mpsc::SendError(Err(r))) = reply.send(r) {
                    self.unwanted(r.backend.map(|b| *b));
                }
            }
            Action::DelPort {
                bridge,
                port,
                reply,
            } => {
                let r = self.del_port(&bridge, &port);
                if let Err(std::sync::mpsc::SendError(Ok(port))) = reply.send(r) {
                    self.notify(Notice::Retire {
                        port,
                        release: true,
                    });
                }
            }
            Action::Reattach {
                bridge,
                port,
                backend,
            } => self.reattach(&bridge, &port, backend),
            Action::Gone { bridge, port } => {
                if let Ok(bi) = self.index_of(&bridge) {
                    let id = self.bridges[bi].as_ref().and_then(|rt| rt.port_id(&port));
                    if let Some(id) = id {
                        self.port_gone(bi, id);
                        self.sync_bridge(bi);
                    }
                }
            }
            Action::Link(l) => self.link_changed(l),
            Action::Change {
                bridge,
                change,
                reply,
            } => {
                let _ = reply.send(self.change(&bridge, change));
            }
            Action::SetPortFast {
                bridge,
                port,
                ifindex,
                fast,
                path,
            } => self.set_port_fast(&bridge, &port, ifindex, fast, &path),
            Action::SetFast { bridge, fast } => {
                if let Ok(bi) = self.index_of(&bridge) {
                    if let Some(rt) = self.bridges[bi].as_mut() {
                        rt.fast.get_or_insert_with(|| Fast::new(fast));
                    }
                }
            }
            Action::Bridges { bridge, reply } => {
                let r = match bridge {
                    Some(b) => self.bridge(&b).map(|rt| vec![rt.view()]),
                    None => Ok(self.bridges.iter().flatten().map(BridgeRt::view).collect()),
                };
                let _ = reply.send(r.map(|mut v| {
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    v
                }));
            }
            Action::Fdb { bridge, reply } => {
                let now = self.now();
                let _ = reply.send(self.bridge(&bridge).map(|rt| rt.fdb_rows(now)));
            }
            Action::Stp { bridge, reply } => {
                let now = self.now();
                let _ = reply.send(self.bridge(&bridge).map(|rt| rt.stp_view(now)));
            }
            Action::Trace {
                bridge,
                port,
                frame,
                reply,
            } => {
                let now = self.now();
                let r = self.index_of(&bridge).and_then(|i| {
                    let rt = self.bridges[i]
                        .as_mut()
                        .ok_or_else(|| DpError::NoSuchBridge(bridge.clone()))?;
                    rt.trace(now, &port, &frame)
                });
                let _ = reply.send(r);
            }
            Action::CaptureStart {
                port,
                dir,
                tx,
                reply,
            } => {
                let _ = reply.send(self.capture_start(&port, dir, tx));
            }
            Action::CaptureStop { port, id, reply } => {
                let dropped = self.capture_stop(&port, id);
                if let Some(reply) = reply {
                    let _ = reply.send(dropped);
                }
            }
            Action::LiveStart {
                bridge,
                port,
                tx,
                reply,
            } => {
                let r = self.index_of(&bridge).and_then(|i| {
                    let rt = self.bridges[i]
                        .as_mut()
                        .ok_or_else(|| DpError::NoSuchBridge(bridge.clone()))?;
                    let port = match port {
                        Some(p) => Some(rt.port_id(&p).ok_or_else(|| DpError::NotOnBridge {
                            port: p.to_string(),
                            bridge: bridge.to_string(),
                        })?),
                        None => None,
                    };
                    self.last_id += 1;
                    rt.live_start(self.last_id, port, tx);
                    Ok((i, self.last_id))
                });
                let r = r.map(|(i, id)| {
                    self.sync_bridge(i);
                    id
                });
                let _ = reply.send(r);
            }
            Action::LiveStop { bridge, id } => {
                if let Ok(i) = self.index_of(&bridge) {
                    if self.bridges[i]
                        .as_mut()
                        .is_some_and(|rt| rt.live_stop(|l| l.id == id))
                    {
                        self.sync_bridge(i);
                    }
                }
            }
            Action::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Action::Ports { reply } => {
                let _ = reply.send(
                    self.bridges
                        .iter()
                        .flatten()
                        .flat_map(BridgeRt::port_infos)
                        .collect(),
                );
            }
            Action::Fast { bridge, reply } => {
                let _ = reply.send(
                    self.bridge(&bridge)
                        .map(|rt| rt.fast.as_ref().map(|f| f.path().clone())),
                );
            }
            Action::CloseAll { reply } => {
                let ports = self.close_all();
                if let Err(std::sync::mpsc::SendError(ports)) = reply.send(ports) {
                    for port in ports {
                        self.notify(Notice::Retire {
                            port,
                            release: false,
                        });
                    }
                }
            }
            Action::Stop => self.stopping = true,
        }
    }

    fn unwanted(&self, backend: Option<Backend>) {
        if let Some(b) = backend {
            self.notify(Notice::Unwanted(b));
        }
    }

    fn add_bridge(
        &mut self,
        name: &str,
        config: BridgeConfig,
        host: Option<Backend>,
    ) -> Result<(), Refused> {
        if self.names.contains_key(name) {
            return Err(refused(DpError::BridgeExists(name.to_owned()), host));
        }
        if self.find_port(name).is_some() {
            let e = DpError::InvalidName {
                name: name.to_owned(),
                why: "a port of another bridge has this name",
            };
            return Err(refused(e, host));
        }
        let mac = config.mac;
        let mut rt = BridgeRt::new(name, Bridge::new(config));
        let id = match host {
            Some(host) => {
                // The control side gave the host interface the bridge MAC when it made
                // it; the notifications of its making are still on their way.
                rt.host_mac = Some(mac);
                rt.host_mac_asked.push((mac, self.now()));
                let spec = PortSpec::new(name, PortKind::Host);
                Some(
                    rt.insert_port(&spec, Some(host))
                        .map_err(|x| refused(DpError::config(name, x.0), x.1))?,
                )
            }
            None => None,
        };
        let index = self
            .bridges
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.bridges.push(None);
                self.bridges.len() - 1
            });
        self.bridges[index] = Some(rt);
        self.names.insert(name.to_owned(), index);
        if let Err(e) = id.map_or(Ok(()), |id| self.register(index, id)) {
            // Undo: nothing of the bridge stays.
            let ports = self.del_bridge(name).unwrap_or_default();
            let backend = ports
                .into_iter()
                .next()
                .and_then(|p| Some(Backend::plain(p.io?)));
            return Err(refused(e, backend));
        }
        self.sync_bridge(index);
        tracing::info!(bridge = name, "bridge added");
        Ok(())
    }

    fn del_bridge(&mut self, name: &str) -> Result<Vec<Retired>, DpError> {
        let index = self.index_of(name)?;
        let mut rt = self.bridges[index]
            .take()
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))?;
        self.names.remove(name);
        let mut out = Vec::new();
        for slot in rt.ports.iter_mut() {
            if let Some(p) = slot.take() {
                self.deregister(p.io.as_deref());
                if let Some(i) = p.ifindex {
                    self.by_ifindex.remove(&i);
                }
                out.push(p.retire(name));
            }
        }
        self.pending.retain(|t| super::untoken(*t).0 != index);
        tracing::info!(bridge = name, "bridge removed");
        Ok(out)
    }

    fn add_port(
        &mut self,
        bridge: &str,
        spec: PortSpec,
        backend: Option<Backend>,
    ) -> Result<PortId, Refused> {
        if let Some((bi, _)) = self.find_port(&spec.name) {
            let b = self.bridges[bi]
                .as_ref()
                .map_or_else(String::new, |rt| rt.name.clone());
            let e = DpError::PortExists {
                port: spec.name.clone(),
                bridge: b,
            };
            return Err(refused(e, backend));
        }
        if self.names.contains_key(&spec.name) {
            let e = DpError::InvalidName {
                name: spec.name.clone(),
                why: "that is a bridge's own interface",
            };
            return Err(refused(e, backend));
        }
        let index = match self.index_of(bridge) {
            Ok(i) => i,
            Err(e) => return Err(refused(e, backend)),
        };
        let now = self.now();
        let link = backend.as_ref().map(|b| b.link);
        let Some(rt) = self.bridges[index].as_mut() else {
            return Err(refused(DpError::NoSuchBridge(bridge.to_owned()), backend));
        };
        let id = rt
            .insert_port(&spec, backend)
            .map_err(|x| refused(DpError::config(bridge, x.0), x.1))?;
        if let (PortKind::Interface, Some((speed, full))) = (spec.kind, link) {
            let _ = rt.core.set_port_link(now, id, speed, full);
        }
        if let Err(e) = self.register(index, id) {
            let backend = self.bridges[index]
                .as_mut()
                .and_then(|rt| rt.take_port(id))
                .and_then(|p| Some(Backend::plain(p.io?)));
            return Err(refused(e, backend));
        }
        self.sync_bridge(index);
        tracing::info!(bridge, port = %spec.name, no = id.0, "port added");
        Ok(id)
    }

    fn del_port(&mut self, bridge: &str, name: &str) -> Result<Retired, DpError> {
        let index = self.index_of(bridge)?;
        let now = self.now();
        let rt = self.bridges[index]
            .as_mut()
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))?;
        let id = rt
            .port_id(name)
            .filter(|id| Some(*id) != rt.core.host_port())
            .ok_or_else(|| DpError::NotOnBridge {
                port: name.to_owned(),
                bridge: bridge.to_owned(),
            })?;
        // Off the fast path first, with what the kernel carried for it counted.
        let fast = rt.port_mut(id).and_then(|p| p.fast.take());
        rt.check_fast(now);
        let mut p = rt
            .take_port(id)
            .ok_or_else(|| DpError::NoSuchPort(name.to_owned()))?;
        p.fast = fast;
        self.deregister(p.io.as_deref());
        if let Some(i) = p.ifindex {
            self.by_ifindex.remove(&i);
        }
        let t = token(index, id);
        self.pending.retain(|x| *x != t);
        self.sync_bridge(index);
        tracing::info!(bridge, port = name, "port removed");
        Ok(p.retire(bridge))
    }

    /// A gone port's device is back: attach `backend` if the port still wants it.
    fn reattach(&mut self, bridge: &str, port: &str, backend: Backend) {
        let now = self.now();
        let found = self.index_of(bridge).ok().and_then(|bi| {
            let rt = self.bridges[bi].as_ref()?;
            let id = rt.port_id(port)?;
            rt.port(id)?.io.is_none().then_some((bi, id))
        });
        let Some((bi, id)) = found else {
            self.notify(Notice::Unwanted(backend));
            return;
        };
        let Some(rt) = self.bridges[bi].as_mut() else {
            return;
        };
        let (mac, link) = (backend.mac, backend.link);
        let Some(p) = rt.port_mut(id) else { return };
        let kind = p.kind;
        let (old_io, old_fast) = p.attach(backend);
        if kind == PortKind::Interface {
            let _ = rt.core.set_port_mac(id, mac);
            let _ = rt.core.set_port_link(now, id, link.0, link.1);
        }
        let _ = rt.core.set_port_up(id, true);
        tracing::info!(bridge, port, "netdev is back; port re-attached");
        if old_io.is_some() || old_fast.is_some() {
            self.notify(Notice::Dispose {
                io: old_io,
                fast: old_fast,
                release: false,
            });
        }
        if let Err(e) = self.register(bi, id) {
            tracing::warn!(error = %e, "re-attach failed");
            self.port_gone(bi, id);
        }
        self.sync_bridge(bi);
    }

    /// A port's link to the fast path, made on the control side: taken while the port is
    /// the one on netdev `ifindex` and has none, and `path` (whose program the link
    /// runs) is still its bridge's fast path (not one of a bridge of that name removed
    /// meanwhile); else closed off this thread.
    fn set_port_fast(
        &mut self,
        bridge: &str,
        port: &str,
        ifindex: u32,
        fast: vbridge_ports::FastPort,
        path: &Arc<vbridge_ports::FastPath>,
    ) {
        let now = self.now();
        let taken = self.index_of(bridge).ok().and_then(|bi| {
            let rt = self.bridges[bi].as_mut()?;
            let ours = rt
                .fast
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f.path(), path));
            let id = rt.port_id(port)?;
            let p = rt.port_mut(id)?;
            (ours && p.ifindex == Some(ifindex) && p.io.is_some() && p.fast.is_none()).then_some(bi)
        });
        let Some(bi) = taken else {
            self.notify(Notice::Dispose {
                io: None,
                fast: Some(fast),
                release: false,
            });
            return;
        };
        if let Some(rt) = self.bridges[bi].as_mut() {
            if let Some(p) = rt.port_id(port).and_then(|id| rt.port_mut(id)) {
                p.fast = Some(fast);
            }
            rt.check_fast(now);
        }
    }

    fn change(&mut self, bridge: &str, change: Change) -> Result<Changed, DpError> {
        let index = self.index_of(bridge)?;
        let now = self.now();
        let rt = self.bridges[index]
            .as_mut()
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))?;
        let BridgeRt { core, ports, .. } = rt;
        let port = |name: &str| {
            ports.iter().enumerate().find_map(|(i, p)| {
                p.as_ref()
                    .filter(|p| p.name == name)
                    .map(|_| PortId(i as u16))
            })
        };
        let out = settings::apply(core, now, change, port).map_err(|r| match r {
            Refusal::NoPort(p) => DpError::NotOnBridge {
                port: p.to_string(),
                bridge: bridge.to_string(),
            },
            Refusal::Core(e) => DpError::config(bridge, e),
        })?;
        self.sync_bridge(index);
        Ok(out)
    }

    /// Starts capturing `port`'s frames (on whichever bridge it is); its flows leave the
    /// kernel fast path at once.
    fn capture_start(
        &mut self,
        port: &str,
        dir: Direction,
        tx: std::sync::mpsc::SyncSender<Captured>,
    ) -> Result<(String, u64), DpError> {
        let (bi, id) = self
            .find_port(port)
            .ok_or_else(|| DpError::NoSuchPort(port.to_owned()))?;
        self.last_id += 1;
        let cid = self.last_id;
        let rt = self.bridges[bi]
            .as_mut()
            .ok_or_else(|| DpError::NoSuchPort(port.to_owned()))?;
        let p = rt
            .port_mut(id)
            .ok_or_else(|| DpError::NoSuchPort(port.to_owned()))?;
        if p.capture.is_some() {
            return Err(DpError::Busy(format!(
                "{port} is being captured already; one capture of a port at a time"
            )));
        }
        p.capture = Some(Capture {
            id: cid,
            dir,
            tx,
            dropped: 0,
            closed: false,
        });
        let bridge = rt.name.clone();
        self.sync_bridge(bi);
        Ok((bridge, cid))
    }

    /// Ends capture `cid` of `port`; the frames it had to drop. The port's flows may go
    /// back to the kernel.
    fn capture_stop(&mut self, port: &str, cid: u64) -> u64 {
        let Some((bi, id)) = self.find_port(port) else {
            return 0;
        };
        let Some(p) = self.bridges[bi].as_mut().and_then(|rt| rt.port_mut(id)) else {
            return 0;
        };
        let dropped = match &p.capture {
            Some(c) if c.id == cid => c.dropped,
            _ => return 0,
        };
        p.capture = None;
        self.sync_bridge(bi);
        dropped
    }

    /// Closes every bridge at daemon shutdown; their ports come back to be closed (host
    /// interfaces and connections stay for the next start).
    fn close_all(&mut self) -> Vec<Retired> {
        let names: Vec<String> = self.names.keys().cloned().collect();
        names
            .iter()
            .filter_map(|n| self.del_bridge(n).ok())
            .flatten()
            .collect()
    }
}
