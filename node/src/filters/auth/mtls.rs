//! Client certificates mapped to consumers. The TLS listener has already verified the chain;
//! this reads the end-entity certificate's identity and looks it up: SPIFFE ID first, then the
//! subject alternative names (DNS and URI), then the subject DN.

use meshgate_config::auth::CredentialRef;
use meshgate_config::auth::compile::MtlsIndex;
use meshgate_pki::PeerIdentity;

/// The consumer credential a verified client certificate maps to.
pub fn match_peer<'a>(peer: &PeerIdentity, index: &'a MtlsIndex) -> Option<&'a CredentialRef> {
    if let Some(id) = &peer.spiffe_id
        && let Some(c) = index.by_spiffe_id.get(id.as_str())
    {
        return Some(c);
    }
    peer.dns_sans
        .iter()
        .chain(peer.uri_sans.iter())
        .find_map(|san| index.by_san.get(san))
        .or_else(|| index.by_subject.get(&peer.subject))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meshgate_config::auth::Consumer;
    use meshgate_pki::SpiffeId;

    use super::*;

    fn cred(username: &str, id: &str) -> CredentialRef {
        CredentialRef {
            consumer: Arc::new(Consumer::new(username, username, vec![], vec![], true).unwrap()),
            id: id.into(),
        }
    }

    fn peer(spiffe: Option<&str>, subject: &str, dns: &[&str], uris: &[&str]) -> PeerIdentity {
        PeerIdentity {
            spiffe_id: spiffe.map(|s| SpiffeId::parse(s).unwrap()),
            subject: subject.into(),
            common_name: None,
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            uri_sans: uris.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn index() -> MtlsIndex {
        let mut index = MtlsIndex::default();
        let web = "spiffe://mesh.local/ns/shop/sa/web";
        index.by_spiffe_id.insert(web.into(), cred("web", web));
        index.by_san.insert(
            "billing.internal".into(),
            cred("billing", "billing.internal"),
        );
        index.by_subject.insert(
            "CN=partner,O=Acme".into(),
            cred("partner", "CN=partner,O=Acme"),
        );
        index
    }

    #[test]
    fn spiffe_id_then_san_then_subject() {
        let index = index();
        let web = peer(
            Some("spiffe://mesh.local/ns/shop/sa/web"),
            "CN=x",
            &["billing.internal"],
            &["spiffe://mesh.local/ns/shop/sa/web"],
        );
        assert_eq!(&*match_peer(&web, &index).unwrap().consumer.username, "web");
        let billing = peer(
            None,
            "CN=partner,O=Acme",
            &["other", "billing.internal"],
            &[],
        );
        assert_eq!(
            &*match_peer(&billing, &index).unwrap().consumer.username,
            "billing"
        );
        let partner = peer(None, "CN=partner,O=Acme", &["unknown.internal"], &[]);
        let found = match_peer(&partner, &index).unwrap();
        assert_eq!(&*found.consumer.username, "partner");
        assert_eq!(&*found.id, "CN=partner,O=Acme");
    }

    #[test]
    fn unknown_certificates_match_nothing() {
        let index = index();
        let stranger = peer(
            Some("spiffe://other.domain/ns/shop/sa/web"),
            "CN=partner",
            &["billing.internal.evil"],
            &[],
        );
        assert!(match_peer(&stranger, &index).is_none());
        // Subject DNs compare whole: a prefix or a different order is another identity.
        assert!(match_peer(&peer(None, "O=Acme,CN=partner", &[], &[]), &index).is_none());
        assert!(match_peer(&peer(None, "CN=partner", &[], &[]), &index).is_none());
    }
}
