//! Which endpoints take traffic, decided at publish time (never per request): the available
//! ones; all of them below the panic threshold; and with `prefer_zone`, only the available
//! ones of this node's zone while there is at least one.

use std::sync::Arc;

use crate::upstream::Endpoint;

/// The outcome of [`rotation`].
#[derive(Debug)]
pub(super) struct Rotation {
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Fewer than `panic_threshold` percent were available: every endpoint is used.
    pub panic: bool,
    /// Only endpoints of the local zone are used.
    pub zone_local: bool,
}

/// The endpoints that take traffic. With `local_zone`, the available endpoints whose `zone`
/// metadata equals it, as long as there is one. Otherwise (or without a zone): the available
/// endpoints; all of them when fewer than `panic_threshold` percent are available (Envoy's
/// panic mode); none when none is.
pub(super) fn rotation(
    endpoints: &[Arc<Endpoint>],
    panic_threshold: u32,
    local_zone: Option<&str>,
) -> Rotation {
    let available: Vec<Arc<Endpoint>> = endpoints
        .iter()
        .filter(|e| e.health.is_available())
        .cloned()
        .collect();
    if let Some(zone) = local_zone {
        let local: Vec<Arc<Endpoint>> = available
            .iter()
            .filter(|e| e.labels().zone() == Some(zone))
            .cloned()
            .collect();
        if !local.is_empty() {
            return Rotation {
                endpoints: local,
                panic: false,
                zone_local: true,
            };
        }
    }
    let panic =
        !available.is_empty() && available.len() * 100 < endpoints.len() * panic_threshold as usize;
    Rotation {
        endpoints: if panic { endpoints.to_vec() } else { available },
        panic,
        zone_local: false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::EndpointLabels;

    fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
                Arc::new(Endpoint::new(addr, 1, "h"))
            })
            .collect()
    }

    fn in_zones(zones: &[&str]) -> Vec<Arc<Endpoint>> {
        zones
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                let addr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
                let labels = EndpointLabels {
                    metadata: [(EndpointLabels::ZONE.to_string(), zone.to_string())].into(),
                    ..EndpointLabels::default()
                };
                Arc::new(Endpoint::discovered(addr, 1, labels))
            })
            .collect()
    }

    fn summary(r: &Rotation) -> (usize, bool) {
        (r.endpoints.len(), r.panic)
    }

    #[test]
    fn rotation_drops_unavailable_endpoints_until_panic() {
        let eps = endpoints(4);
        assert_eq!(summary(&rotation(&eps, 50, None)), (4, false));
        eps[0].health.set_probe_healthy(false);
        assert_eq!(summary(&rotation(&eps, 50, None)), (3, false));
        eps[1].health.eject(u64::MAX, Duration::from_secs(1));
        // 2 of 4 available is exactly 50 %: not below the threshold.
        assert_eq!(summary(&rotation(&eps, 50, None)), (2, false));
        eps[2].health.set_probe_healthy(false);
        // 1 of 4: panic, every endpoint takes traffic.
        assert_eq!(summary(&rotation(&eps, 50, None)), (4, true));
        // Panic mode off: only the one available endpoint.
        assert_eq!(rotation(&eps, 0, None).endpoints.len(), 1);
        eps[3].health.set_probe_healthy(false);
        assert_eq!(
            summary(&rotation(&eps, 50, None)),
            (0, false),
            "none available: nothing to send to"
        );
    }

    #[test]
    fn the_local_zone_takes_all_traffic_while_one_of_it_is_available() {
        let eps = in_zones(&["a", "b", "a", "c"]);
        let local = rotation(&eps, 50, Some("a"));
        assert!(local.zone_local);
        let addresses: Vec<_> = local.endpoints.iter().map(|e| e.address).collect();
        assert_eq!(addresses, vec![eps[0].address, eps[2].address]);

        eps[0].health.set_probe_healthy(false);
        let one_left = rotation(&eps, 50, Some("a"));
        assert!(one_left.zone_local);
        assert_eq!(one_left.endpoints.len(), 1);

        eps[2].health.eject(u64::MAX, Duration::from_secs(1));
        let fallback = rotation(&eps, 50, Some("a"));
        assert!(
            !fallback.zone_local,
            "no local endpoint available: all zones"
        );
        let addresses: Vec<_> = fallback.endpoints.iter().map(|e| e.address).collect();
        assert_eq!(addresses, vec![eps[1].address, eps[3].address]);

        assert!(!rotation(&eps, 50, Some("z")).zone_local, "no such zone");
        assert_eq!(rotation(&eps, 50, None).endpoints.len(), 2);
    }
}
