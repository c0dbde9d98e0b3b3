//! Per-client-IP concurrent connection limits, checked once per accepted connection before any
//! byte of HTTP or TLS is read. Lock-free: a count-min sketch of atomic counters (two rows of
//! 2^15) keyed by a seeded hash of (listener, IP). Counts can only be overestimated (two IPs
//! sharing both of their cells), never under: a client cannot evade its limit, and a false
//! refusal needs both cells of its IP holding `limit` connections of other clients: with N
//! connections spread over 32768 cells per row a cell holds N/32768 on average, so at the
//! default limit of 100 that takes millions of concurrent connections, and random per-process
//! seeds keep an attacker from aiming at a victim's cells. Memory is fixed (256 KiB)
//! whatever an attacker does with IPv6 source addresses, and nothing is ever allocated or
//! removed, so there is no lock and no cleanup task.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use meshgate_config::security::compile::canonical_ip;

const ROW_BITS: u32 = 15;
const ROW: usize = 1 << ROW_BITS;

/// Live connections per (listener, client IP), approximately from above.
pub struct PerIpConnections {
    rows: [Box<[AtomicU32]>; 2],
    seeds: [u64; 2],
}

impl std::fmt::Debug for PerIpConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerIpConnections").finish_non_exhaustive()
    }
}

impl Default for PerIpConnections {
    fn default() -> Self {
        let row = || (0..ROW).map(|_| AtomicU32::new(0)).collect::<Box<[_]>>();
        // Seeded from the process's random hasher keys so that collisions cannot be planned.
        let seed = |n: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.finish()
        };
        Self {
            rows: [row(), row()],
            seeds: [seed(1), seed(2)],
        }
    }
}

/// The client already holds as many connections as the listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("per-IP connection limit reached")]
pub struct OverLimit;

/// Holds one connection's place in the counts; released on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    table: Arc<PerIpConnections>,
    cells: [usize; 2],
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        for (row, cell) in self.table.rows.iter().zip(self.cells) {
            row[cell].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl PerIpConnections {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn cells(&self, listener: &str, ip: IpAddr) -> [usize; 2] {
        let ip = canonical_ip(ip);
        let listener_hash = xxhash_rust::xxh3::xxh3_64(listener.as_bytes());
        self.seeds.map(|seed| {
            let seed = seed ^ listener_hash;
            let hash = match ip {
                IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64_with_seed(&v4.octets(), seed),
                IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64_with_seed(&v6.octets(), seed),
            };
            (hash as usize) & (ROW - 1)
        })
    }

    /// Count a new connection unless the IP already holds `limit` (0 = unlimited, not counted).
    pub fn try_acquire(
        self: &Arc<Self>,
        listener: &str,
        ip: IpAddr,
        limit: u32,
    ) -> Result<Option<ConnectionPermit>, OverLimit> {
        if limit == 0 {
            return Ok(None);
        }
        let cells = self.cells(listener, ip);
        // Increment first, then check the minimum: two racing connections can both see the
        // other's increment and both back off (harmless), but never both pass the last slot.
        let counts = [
            self.rows[0][cells[0]].fetch_add(1, Ordering::AcqRel) + 1,
            self.rows[1][cells[1]].fetch_add(1, Ordering::AcqRel) + 1,
        ];
        let permit = ConnectionPermit {
            table: self.clone(),
            cells,
        };
        if counts[0].min(counts[1]) > limit {
            drop(permit);
            return Err(OverLimit);
        }
        Ok(Some(permit))
    }

    /// The (over)estimated live connections of `ip` on `listener`.
    pub fn estimate(&self, listener: &str, ip: IpAddr) -> u32 {
        let cells = self.cells(listener, ip);
        self.rows[0][cells[0]]
            .load(Ordering::Acquire)
            .min(self.rows[1][cells[1]].load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_and_permits_give_their_place_back() {
        let table = PerIpConnections::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| table.try_acquire("main", ip, 3).unwrap())
            .collect();
        assert!(table.try_acquire("main", ip, 3).is_err());
        assert_eq!(table.estimate("main", ip), 3, "a refusal leaves no trace");
        assert!(
            table.try_acquire("other", ip, 3).unwrap().is_some(),
            "listeners count apart"
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(
            table.try_acquire("main", mapped, 3).is_err(),
            "v4-mapped is the same client"
        );
        drop(held);
        assert_eq!(table.estimate("main", ip), 0);
        assert!(table.try_acquire("main", ip, 3).unwrap().is_some());
        assert!(
            table.try_acquire("main", ip, 0).unwrap().is_none(),
            "0 = unlimited"
        );
    }

    #[test]
    fn many_other_clients_do_not_refuse_a_newcomer() {
        let table = PerIpConnections::new();
        let held: Vec<_> = (0..20_000u32)
            .map(|i| {
                let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
                table.try_acquire("main", ip, 10).unwrap()
            })
            .collect();
        let newcomer: IpAddr = "2001:db8::7".parse().unwrap();
        assert!(table.try_acquire("main", newcomer, 10).unwrap().is_some());
        drop(held);
    }
}
