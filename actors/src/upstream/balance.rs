//! Load-balancing algorithms over one endpoint set. Built once per published set (schedules,
//! hash rings), then picked from lock-free on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use meshgate_config::compile::LoadBalancing;
use rand::Rng;

use super::endpoint::Endpoint;

/// Virtual nodes per unit of weight on the consistent-hash ring (ketama uses 100–160).
const VNODES_PER_WEIGHT: u32 = 100;
/// Upper bound on ring size, whatever the weights.
const MAX_RING: usize = 100_000;
/// Upper bound on the weighted round-robin schedule length.
const MAX_SCHEDULE: u64 = 4_096;

/// What the request offers the balancer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// The consistent-hash key, when the upstream hashes and the request carries one.
    pub hash_key: Option<u64>,
    /// An endpoint to avoid (a retry should go elsewhere) when another exists.
    pub avoid: Option<std::net::SocketAddr>,
}

/// A prepared balancer for one endpoint list.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin, precomputed into a schedule of endpoint indices.
    RoundRobin {
        schedule: Vec<u32>,
        next: AtomicUsize,
    },
    LeastRequests,
    PeakEwma,
    ConsistentHash {
        /// Sorted by hash.
        ring: Vec<(u64, u32)>,
    },
}

impl Balancer {
    pub fn build(algorithm: &LoadBalancing, endpoints: &[Arc<Endpoint>]) -> Self {
        match algorithm {
            LoadBalancing::RoundRobin => Balancer::RoundRobin {
                schedule: smooth_wrr_schedule(endpoints),
                // Start at a random point so that many gateway nodes do not move in lock-step.
                next: AtomicUsize::new(rand::rng().random_range(0..1024)),
            },
            LoadBalancing::LeastRequests => Balancer::LeastRequests,
            LoadBalancing::PeakEwma => Balancer::PeakEwma,
            LoadBalancing::ConsistentHash(_) => Balancer::ConsistentHash {
                ring: hash_ring(endpoints),
            },
        }
    }

    /// The index of the chosen endpoint, or `None` when there is none.
    pub fn pick(&self, endpoints: &[Arc<Endpoint>], ctx: &PickContext) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        let choice = match self {
            Balancer::RoundRobin { schedule, next } => {
                // A retry does not take a turn: otherwise a failing endpoint would be every
                // request's first pick (its retry moving the schedule past the other one).
                let i = if ctx.avoid.is_some() {
                    next.load(Ordering::Relaxed)
                } else {
                    next.fetch_add(1, Ordering::Relaxed)
                };
                schedule.get(i % schedule.len().max(1)).map(|&e| e as usize)
            }
            Balancer::LeastRequests => Some(p2c(endpoints, |e| {
                f64::from(e.stats.in_flight()) / f64::from(e.weight)
            })),
            Balancer::PeakEwma => Some(p2c(endpoints, |e| {
                e.stats.ewma_cost() / f64::from(e.weight)
            })),
            Balancer::ConsistentHash { ring } => match ctx.hash_key {
                Some(key) => ring_lookup(ring, key),
                None => Some(rand::rng().random_range(0..n)),
            },
        }?;
        match ctx.avoid {
            Some(avoid) if endpoints[choice].address == avoid => {
                // A retry: take the next endpoint that is not the one that failed.
                (1..n)
                    .map(|k| (choice + k) % n)
                    .find(|&i| endpoints[i].address != avoid)
                    .or(Some(choice))
            }
            _ => Some(choice),
        }
    }
}

/// Power of two random choices: sample two distinct endpoints, keep the cheaper.
fn p2c(endpoints: &[Arc<Endpoint>], cost: impl Fn(&Endpoint) -> f64) -> usize {
    let n = endpoints.len();
    let mut rng = rand::rng();
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    if cost(&endpoints[b]) < cost(&endpoints[a]) {
        b
    } else {
        a
    }
}

/// nginx's smooth weighted round robin, unrolled into one period (scaled down when the
/// weights sum past [`MAX_SCHEDULE`]).
fn smooth_wrr_schedule(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
    let scale = total.div_ceil(MAX_SCHEDULE).max(1);
    let weights: Vec<i64> = endpoints
        .iter()
        .map(|e| (u64::from(e.weight) / scale).max(1) as i64)
        .collect();
    let sum: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        schedule.push(best as u32);
    }
    schedule
}

/// The hash used for ring points and request keys: stable across processes and nodes, so
/// every gateway sends one key to the same endpoint.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn hash_ring(endpoints: &[Arc<Endpoint>]) -> Vec<(u64, u32)> {
    let total: u64 = endpoints
        .iter()
        .map(|e| u64::from(e.weight) * u64::from(VNODES_PER_WEIGHT))
        .sum();
    let scale = total.div_ceil(MAX_RING as u64).max(1);
    let mut ring = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let vnodes = (u64::from(e.weight) * u64::from(VNODES_PER_WEIGHT) / scale).max(1);
        for v in 0..vnodes {
            let point = stable_hash(format!("{}-{v}", e.address).as_bytes());
            ring.push((point, i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

fn ring_lookup(ring: &[(u64, u32)], key: u64) -> Option<usize> {
    if ring.is_empty() {
        return None;
    }
    let at = ring.partition_point(|(point, _)| *point < key);
    let (_, endpoint) = ring[at % ring.len()];
    Some(endpoint as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config::compile::HashOn;
    use std::collections::HashMap;

    fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
                Arc::new(Endpoint::new(addr, w, "h"))
            })
            .collect()
    }

    fn counts(b: &Balancer, eps: &[Arc<Endpoint>], n: usize) -> Vec<usize> {
        let mut c = vec![0; eps.len()];
        for _ in 0..n {
            c[b.pick(eps, &PickContext::default()).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn weighted_round_robin_is_exact_over_a_period_and_smooth() {
        let eps = endpoints(&[5, 1, 1]);
        let b = Balancer::build(&LoadBalancing::RoundRobin, &eps);
        assert_eq!(counts(&b, &eps, 700), vec![500, 100, 100]);
        if let Balancer::RoundRobin { schedule, .. } = &b {
            // nginx's smooth WRR never sends the heavy endpoint more than its share in a row.
            assert_eq!(schedule, &vec![0, 0, 1, 0, 2, 0, 0]);
        }
    }

    #[test]
    fn least_requests_prefers_idle_endpoints() {
        let eps = endpoints(&[1, 1, 1]);
        let busy: Vec<_> = (0..10).map(|_| eps[0].start_request()).collect();
        let b = Balancer::build(&LoadBalancing::LeastRequests, &eps);
        let c = counts(&b, &eps, 3000);
        // P2C only picks the busy endpoint when both samples are it: never, as samples are distinct.
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1200 && c[2] > 1200, "{c:?}");
        drop(busy);
        let c = counts(&b, &eps, 3000);
        assert!(c.iter().all(|&n| n > 700), "{c:?}");
    }

    #[test]
    fn peak_ewma_avoids_slow_endpoints() {
        let eps = endpoints(&[1, 1, 1]);
        eps[2].stats.observe_rtt(std::time::Duration::from_secs(2));
        let b = Balancer::build(&LoadBalancing::PeakEwma, &eps);
        let c = counts(&b, &eps, 3000);
        assert_eq!(c[2], 0, "{c:?}");
    }

    #[test]
    fn consistent_hash_is_sticky_and_spreads() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let b = Balancer::build(&LoadBalancing::ConsistentHash(HashOn::ClientIp), &eps);
        let mut per: HashMap<usize, usize> = HashMap::new();
        for user in 0..4000 {
            let key = stable_hash(format!("user-{user}").as_bytes());
            let ctx = PickContext {
                hash_key: Some(key),
                avoid: None,
            };
            let first = b.pick(&eps, &ctx).unwrap();
            assert_eq!(b.pick(&eps, &ctx), Some(first));
            *per.entry(first).or_default() += 1;
        }
        assert_eq!(per.len(), 4);
        assert!(per.values().all(|&n| n > 600), "{per:?}");
        // Removing one endpoint moves only the keys that were on it.
        let fewer: Vec<_> = eps[..3].to_vec();
        let b3 = Balancer::build(&LoadBalancing::ConsistentHash(HashOn::ClientIp), &fewer);
        let mut moved = 0;
        for user in 0..4000 {
            let ctx = PickContext {
                hash_key: Some(stable_hash(format!("user-{user}").as_bytes())),
                avoid: None,
            };
            let before = b.pick(&eps, &ctx).unwrap();
            let after = b3.pick(&fewer, &ctx).unwrap();
            if before != 3 && before != after {
                moved += 1;
            }
        }
        assert_eq!(moved, 0);
    }

    #[test]
    fn retries_do_not_shift_the_round_robin_turns() {
        let eps = endpoints(&[1, 1]);
        let b = Balancer::build(&LoadBalancing::RoundRobin, &eps);
        let mut first_picks = [0, 0];
        for _ in 0..10 {
            let first = b.pick(&eps, &PickContext::default()).unwrap();
            first_picks[first] += 1;
            if first == 0 {
                // Endpoint 0 fails; the retry avoids it.
                let ctx = PickContext {
                    hash_key: None,
                    avoid: Some(eps[0].address),
                };
                assert_eq!(b.pick(&eps, &ctx), Some(1));
            }
        }
        assert_eq!(first_picks, [5, 5]);
    }

    #[test]
    fn avoid_steers_away_from_a_failed_endpoint() {
        let eps = endpoints(&[1, 1]);
        let b = Balancer::build(&LoadBalancing::RoundRobin, &eps);
        for _ in 0..10 {
            let ctx = PickContext {
                hash_key: None,
                avoid: Some(eps[0].address),
            };
            assert_eq!(b.pick(&eps, &ctx), Some(1));
        }
    }
}
