//! Building a saved [`Config`] again at daemon start (control side): host interfaces
//! found again (or made anew), ports opened (kept as gone when their device is missing),
//! settings and static entries applied through the same typed changes as the API uses.

use std::time::Duration;

use vbridge_core::BridgeConfig;

use crate::bridge_rt::PortSpec;
use crate::config::Config;
use crate::error::DpError;
use crate::handle::Datapath;
use crate::settings::Change;

pub(crate) fn restore(dp: &Datapath, config: &Config) -> Vec<DpError> {
    let mut errors = Vec::new();
    let mut note = |r: Result<(), DpError>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    for (name, b) in &config.bridges {
        let mut bc = BridgeConfig::new(b.mac);
        bc.mac_fixed = b.mac_fixed;
        bc.ageing = Duration::try_from_secs_f64(b.ageing_secs).unwrap_or(bc.ageing);
        if let Err(e) = dp.add_restored_bridge(name, bc, b.host_ifindex) {
            note(Err(e));
            continue;
        }
        for p in &b.ports {
            let vlan = match p.vlan.to_mode() {
                Ok(v) => v,
                Err(e) => {
                    note(Err(DpError::config(name, e)));
                    Default::default()
                }
            };
            let spec = PortSpec {
                name: p.name.clone(),
                kind: p.kind,
                port_no: Some(p.port_no),
                flags: p.flags,
                vlan,
                max_learned: p.max_learned,
                conn: p.conn.clone(),
                socket: p.socket.clone(),
                vxlan: p.vxlan.clone(),
                // It was accepted when it was added.
                force: true,
                restoring: true,
            };
            match dp.add_port(name, &spec, true) {
                Ok(_) => note(
                    dp.change(
                        name,
                        Change::PortStp {
                            port: p.name.clone(),
                            config: p.stp,
                        },
                    )
                    .map(drop),
                ),
                Err(e) => note(Err(e)),
            }
        }
        note(
            dp.change(name, Change::StpParams(b.stp.to_core()))
                .map(drop),
        );
        note(dp.change(name, Change::Stp(b.stp.mode)).map(drop));
        for s in &b.static_fdb {
            note(dp.fdb_add(name, s.mac, s.vlan, &s.port));
        }
    }
    errors
}
