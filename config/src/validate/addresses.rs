//! Sockets that would collide: two listeners, a listener and the admin API, or the mesh CA
//! service, on one address. Caught here so that `validate` says which fields clash instead of
//! the node failing to bind at start or on reload.

use std::net::SocketAddr;

use super::Validator;
use crate::error::FieldPath;
use crate::model::Config;

impl Validator {
    pub(super) fn shared_addresses(&mut self, config: &Config, root: &FieldPath) {
        let mut sockets: Vec<(FieldPath, SocketAddr)> = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let path = root.field("listeners").index(i).field("address");
            if let Ok(address) = l.address.parse() {
                sockets.push((path, address));
            }
        }
        if config.admin.enabled
            && let Ok(address) = config.admin.address.parse()
        {
            sockets.push((root.field("admin").field("address"), address));
        }
        if let Some(ca) = config.mesh.as_ref().and_then(|m| m.ca_server.as_ref())
            && let Ok(address) = ca.address.parse()
        {
            sockets.push((
                root.field("mesh").field("ca_server").field("address"),
                address,
            ));
        }
        for (later, (path, address)) in sockets.iter().enumerate() {
            if let Some((first, _)) = sockets[..later]
                .iter()
                .find(|(_, earlier)| overlap(*earlier, *address))
            {
                self.push(path.error(format!(
                    "{address} is already taken by {}; every listener, the admin API and the CA service need an address of their own",
                    first.as_str()
                )));
            }
        }
    }
}

/// Whether binding both would fail: same port (port 0 picks a fresh one each time), same
/// family (IPv6 sockets are bound v6-only), and the same IP or a wildcard on either side.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
