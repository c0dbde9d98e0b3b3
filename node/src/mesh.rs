//! The sidecar's data-plane share of the mesh: authorizing callers on `mesh: inbound`
//! listeners by their SPIFFE id, and the CA service that signs other sidecars' CSRs.

pub mod ca_service;

use http::StatusCode;
use meshgate_actors::Snapshot;
use meshgate_config::model::mesh::AuthorizationAction;

use crate::server::ConnInfo;

/// On a `mesh: inbound` listener, whether the caller may pass. `Err` carries the reason for
/// the 403 body. Other listeners always pass.
pub fn authorize(snapshot: &Snapshot, conn: &ConnInfo) -> Result<(), (StatusCode, String)> {
    let inbound = snapshot
        .listener(&conn.listener)
        .is_some_and(|l| l.mesh_inbound);
    if !inbound {
        return Ok(());
    }
    let Some(mesh) = &snapshot.mesh else {
        return Err((StatusCode::FORBIDDEN, "mesh is not configured".into()));
    };
    let caller = conn
        .tls_info
        .as_ref()
        .and_then(|t| t.peer_spiffe_id.as_deref());
    match mesh.spec.authorization.decide(caller) {
        AuthorizationAction::Allow => Ok(()),
        AuthorizationAction::Deny => Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} may not call {}",
                caller.unwrap_or("an unidentified caller"),
                mesh.identity.spiffe_id
            ),
        )),
    }
}
