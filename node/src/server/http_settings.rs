//! hyper's per-connection settings derived from a listener's security policy (its hard limits
//! set above the configured ones, so that those answer first with the standard error body), and
//! what the header watchdog in `serve_http` counts.

use std::time::Duration;

use meshgate_config::security::SecurityPolicy;

/// Header bytes hyper accepts before answering 431 (at least; see [`HttpSettings`]).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Room for the request line on top of the header allowance. hyper answers 414 itself for a
/// target over 64 KiB, but only once the whole head is in its read buffer; a head that outgrows
/// the buffer first is answered 431. So targets up to this length get their 414.
pub const REQUEST_LINE_BYTES: usize = 128 * 1024;
/// hyper's own default header count.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// What hyper needs to know about a listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub http2: bool,
    pub header_read_timeout: Duration,
    /// hyper's own hard limits, set above the configured ones so that those answer first with
    /// the standard error body; hyper still refuses anything beyond (431/414, or h2's 431).
    pub max_buf_size: usize,
    pub max_headers: usize,
    pub h2_max_header_list_size: u32,
}

impl HttpSettings {
    pub fn new(http2: bool, server_timeout: Duration, policy: Option<&SecurityPolicy>) -> Self {
        let Some(p) = policy.filter(|p| p.enabled) else {
            return Self {
                http2,
                header_read_timeout: server_timeout,
                max_buf_size: MAX_HEADER_BYTES + REQUEST_LINE_BYTES,
                max_headers: HYPER_DEFAULT_MAX_HEADERS,
                h2_max_header_list_size: (MAX_HEADER_BYTES + REQUEST_LINE_BYTES) as u32,
            };
        };
        let max_headers = (p.max_headers * 2).max(HYPER_DEFAULT_MAX_HEADERS);
        // Each field line adds ": " and CRLF; the request line carries the target.
        let fields = (p.max_header_bytes + 4 * max_headers + 1024).max(MAX_HEADER_BYTES);
        Self {
            http2,
            header_read_timeout: p.header_timeout,
            max_buf_size: fields + REQUEST_LINE_BYTES.max(p.max_uri_length + 1024),
            max_headers,
            // RFC 9113 §6.5.2 counts 32 bytes of overhead per field; `:path` is one of them.
            h2_max_header_list_size: u32::try_from(
                (p.max_header_bytes + 32 * max_headers + 1024).max(MAX_HEADER_BYTES)
                    + REQUEST_LINE_BYTES.max(p.max_uri_length + 1024),
            )
            .unwrap_or(u32::MAX),
        }
    }
}

/// What the header watchdog knows of a connection: request heads completed, and whether they
/// came over HTTP/2. Written once per request with relaxed atomics.
#[derive(Debug, Default)]
pub struct RequestActivity {
    requests: std::sync::atomic::AtomicU64,
    h2: std::sync::atomic::AtomicBool,
}

impl RequestActivity {
    pub fn record(&self, version: http::Version) {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(1, Relaxed);
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Relaxed);
        }
    }

    pub fn read(&self) -> (u64, bool) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.requests.load(Relaxed), self.h2.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config::security::model::{ByteSize, SecurityConfig};

    fn policy(edit: impl FnOnce(&mut SecurityConfig)) -> SecurityPolicy {
        let mut c = SecurityConfig::default();
        edit(&mut c);
        SecurityPolicy::new(&c, Duration::from_secs(10))
    }

    #[test]
    fn hypers_limits_stay_above_the_configured_ones() {
        let head = MAX_HEADER_BYTES + REQUEST_LINE_BYTES;
        let off = HttpSettings::new(true, Duration::from_secs(10), None);
        assert_eq!((off.max_buf_size, off.max_headers), (head, 100));
        let defaults = policy(|_| {});
        let s = HttpSettings::new(true, Duration::from_secs(10), Some(&defaults));
        assert_eq!((s.max_buf_size, s.max_headers), (head, 200));
        let big = policy(|c| {
            c.limits.max_headers = 500;
            c.limits.max_header_bytes = ByteSize(256 * 1024);
            c.slow_clients.header_timeout =
                Some(meshgate_config::duration::HumanDuration::from_secs(3));
        });
        let s = HttpSettings::new(true, Duration::from_secs(10), Some(&big));
        assert_eq!(s.max_headers, 1000);
        assert!(s.max_buf_size > 256 * 1024 + 500 * 4);
        assert!(s.h2_max_header_list_size as usize > 256 * 1024 + 32 * 500);
        assert_eq!(s.header_read_timeout, Duration::from_secs(3));
    }
}
