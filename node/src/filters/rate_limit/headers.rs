//! The headers that tell a client where it stands: `X-RateLimit-Limit`, `-Remaining`, `-Reset`
//! (delta seconds) for the window closest to refusing, and the IETF fields of
//! draft-ietf-httpapi-ratelimit-headers-09: `RateLimit: "<window>";r=<remaining>;t=<seconds>`
//! for that window and `RateLimit-Policy` listing every window of the route (prebuilt when the
//! config is compiled). Names come from `rate_limiting.headers`; an unset name is not sent.

use std::fmt::Write;
use std::ops::Range;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue};
use meshgate_config::rate_limit::HeaderNames;

use super::WindowReport;

/// Add the limit headers for `report` (and the route's policy field) to `headers`.
pub fn add(
    headers: &mut HeaderMap,
    names: &HeaderNames,
    report: Option<&WindowReport>,
    policy: Option<&HeaderValue>,
) {
    if let (Some(name), Some(value)) = (&names.policy, policy) {
        headers.insert(name.clone(), value.clone());
    }
    let Some(report) = report else { return };
    let reset = ceil_secs(report.reset);
    // Every value is written into one buffer and handed out as slices of it: one allocation
    // per response instead of one per header.
    let mut buf = BytesMut::with_capacity(report.label.len() + 64);
    let limit = written(&mut buf, format_args!("{}", report.limit));
    let remaining = written(&mut buf, format_args!("{}", report.remaining));
    let reset_secs = written(&mut buf, format_args!("{reset}"));
    let ratelimit = written(
        &mut buf,
        format_args!("\"{}\";r={};t={reset}", report.label, report.remaining),
    );
    let buf = buf.freeze();
    let fields = [
        (&names.limit, limit),
        (&names.remaining, remaining),
        (&names.reset, reset_secs),
        (&names.ratelimit, ratelimit),
    ];
    for (name, range) in fields {
        if let Some(name) = name
            && let Ok(value) = HeaderValue::from_maybe_shared(buf.slice(range))
        {
            headers.insert(name.clone(), value);
        }
    }
}

/// Append `value` to `buf`; the range it took.
fn written(buf: &mut BytesMut, value: std::fmt::Arguments<'_>) -> Range<usize> {
    let start = buf.len();
    let _ = buf.write_fmt(value);
    start..buf.len()
}

/// Whole seconds, rounded up: a client that waits this long finds the window reset.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderName;

    use super::*;

    fn names() -> HeaderNames {
        HeaderNames {
            limit: Some(HeaderName::from_static("x-ratelimit-limit")),
            remaining: Some(HeaderName::from_static("x-ratelimit-remaining")),
            reset: Some(HeaderName::from_static("x-ratelimit-reset")),
            ratelimit: Some(HeaderName::from_static("ratelimit")),
            policy: Some(HeaderName::from_static("ratelimit-policy")),
        }
    }

    #[test]
    fn the_closest_window_and_the_policy_are_reported() {
        let mut headers = HeaderMap::new();
        let report = WindowReport {
            limit: 10,
            remaining: 3,
            reset: Duration::from_millis(2_100),
            label: Arc::from("per-ip/1s"),
        };
        let policy = HeaderValue::from_static("\"per-ip/1s\";q=10;w=1");
        add(&mut headers, &names(), Some(&report), Some(&policy));
        assert_eq!(headers["x-ratelimit-limit"], "10");
        assert_eq!(headers["x-ratelimit-remaining"], "3");
        assert_eq!(headers["x-ratelimit-reset"], "3");
        assert_eq!(headers["ratelimit"], "\"per-ip/1s\";r=3;t=3");
        assert_eq!(headers["ratelimit-policy"], "\"per-ip/1s\";q=10;w=1");
    }

    #[test]
    fn unset_names_are_not_sent() {
        let mut headers = HeaderMap::new();
        let names = HeaderNames {
            remaining: None,
            ratelimit: None,
            ..names()
        };
        let report = WindowReport {
            limit: 1,
            remaining: 0,
            reset: Duration::ZERO,
            label: Arc::from("p"),
        };
        add(&mut headers, &names, Some(&report), None);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers["x-ratelimit-reset"], "0");
    }
}
