//! How a discovered endpoint set becomes the pool's endpoints: the `subset` filter, and the
//! reuse of the existing [`Endpoint`] (same `Arc`) for every address that stays, so its
//! connection pool, statistics and health survive the update. Pure functions: the pool actor
//! decides when to call them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_config::model::SubsetConfig;
use meshgate_discovery::{Endpoint as Instance, EndpointSet};

use crate::upstream::{Endpoint, EndpointLabels};

/// Whether an instance belongs to the subset: it carries every tag and every metadata pair
/// (no subset: every instance does).
pub(super) fn in_subset(subset: Option<&SubsetConfig>, instance: &Instance) -> bool {
    let Some(subset) = subset else {
        return true;
    };
    subset.tags.iter().all(|tag| instance.tags.contains(tag))
        && subset
            .metadata
            .iter()
            .all(|(key, value)| instance.metadata.get(key) == Some(value))
}

/// The data-plane endpoints of `set` after the subset filter, in set order. An address that
/// is already in `previous` keeps its `Endpoint`, with the weight and labels updated in
/// place — unless it was a static target (its Host header is a configured name, not the
/// address), which a discovered endpoint replaces.
pub(super) fn endpoints(
    set: &EndpointSet,
    subset: Option<&SubsetConfig>,
    previous: &[Arc<Endpoint>],
) -> Vec<Arc<Endpoint>> {
    let old: HashMap<SocketAddr, &Arc<Endpoint>> =
        previous.iter().map(|e| (e.address, e)).collect();
    set.iter()
        .filter(|instance| in_subset(subset, instance))
        .map(|instance| {
            let address = instance.socket_addr();
            let labels = EndpointLabels {
                id: instance.id.clone(),
                tags: instance.tags.clone(),
                metadata: instance.metadata.clone(),
            };
            match old.get(&address) {
                Some(e) if e.host_header == address.to_string() => {
                    e.update(instance.weight, labels);
                    Arc::clone(e)
                }
                _ => Arc::new(Endpoint::discovered(address, instance.weight, labels)),
            }
        })
        .collect()
}

/// Addresses that joined and left between two endpoint lists (for the log).
pub(super) fn changes(before: &[Arc<Endpoint>], after: &[Arc<Endpoint>]) -> (usize, usize) {
    let joined = after
        .iter()
        .filter(|a| !before.iter().any(|b| b.address == a.address))
        .count();
    let left = before
        .iter()
        .filter(|b| !after.iter().any(|a| a.address == b.address))
        .count();
    (joined, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(last: u8, version: &str, tags: &[&str]) -> Instance {
        Instance::new([10, 0, 0, last].into(), 8080)
            .with_metadata("version", version)
            .with_tags(tags.iter().copied())
            .with_id(format!("web-{last}"))
    }

    #[test]
    fn subset_needs_every_tag_and_every_metadata_pair() {
        let subset = SubsetConfig {
            tags: vec!["canary".into()],
            metadata: [("version".to_string(), "v2".to_string())].into(),
        };
        assert!(in_subset(
            Some(&subset),
            &instance(1, "v2", &["canary", "eu"])
        ));
        assert!(!in_subset(Some(&subset), &instance(2, "v2", &["eu"])));
        assert!(!in_subset(Some(&subset), &instance(3, "v1", &["canary"])));
        assert!(in_subset(None, &instance(4, "v1", &[])));
        let metadata_only = SubsetConfig {
            tags: vec![],
            metadata: [("zone".to_string(), "a".to_string())].into(),
        };
        assert!(
            !in_subset(Some(&metadata_only), &instance(5, "v1", &[])),
            "a missing key does not match"
        );
    }

    #[test]
    fn addresses_that_stay_keep_their_endpoint_and_take_new_weight_and_labels() {
        let first = EndpointSet::new([instance(1, "v1", &[]), instance(2, "v1", &[])]);
        let before = endpoints(&first, None, &[]);
        assert_eq!(before.len(), 2);
        assert_eq!(before[0].labels().metadata["version"], "v1");
        assert_eq!(before[0].host_header, "10.0.0.1:8080");

        let second = EndpointSet::new([
            instance(2, "v2", &["new"]).with_weight(5),
            instance(3, "v1", &[]),
        ]);
        let after = endpoints(&second, None, &before);
        assert!(Arc::ptr_eq(&after[0], &before[1]), "10.0.0.2 kept its Arc");
        assert_eq!(after[0].weight(), 5);
        assert_eq!(after[0].labels().metadata["version"], "v2");
        assert_eq!(after[0].labels().tags, vec!["new".to_string()]);
        assert_eq!(after[0].labels().id.as_deref(), Some("web-2"));
        assert_eq!(changes(&before, &after), (1, 1));
    }

    #[test]
    fn a_static_target_at_the_same_address_is_replaced() {
        let address: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let configured = vec![Arc::new(Endpoint::new(address, 1, "web.internal:8080"))];
        let set = EndpointSet::new([instance(1, "v1", &[])]);
        let after = endpoints(&set, None, &configured);
        assert!(!Arc::ptr_eq(&after[0], &configured[0]));
        assert_eq!(after[0].host_header, "10.0.0.1:8080");
    }

    #[test]
    fn the_subset_filters_the_set() {
        let subset = SubsetConfig {
            tags: vec![],
            metadata: [("version".to_string(), "v2".to_string())].into(),
        };
        let set = EndpointSet::new([instance(1, "v1", &[]), instance(2, "v2", &[])]);
        let picked = endpoints(&set, Some(&subset), &[]);
        let addresses: Vec<String> = picked.iter().map(|e| e.address.to_string()).collect();
        assert_eq!(addresses, vec!["10.0.0.2:8080".to_string()]);
    }
}
