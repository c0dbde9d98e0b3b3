//! Request-side routing: derive the canonical host and path of a request and ask the
//! listener's [`RouteTable`] (built by `meshgate-config`) for the winning route.

pub mod normalize;

use std::borrow::Cow;

use http::Request;
use meshgate_config::{RequestView, RouteMatch, RouteTable};

pub use normalize::{PathError, normalize};

/// The host a request is for: the URI authority (HTTP/2, absolute-form) or the Host header;
/// lowercase, without port or trailing dot.
pub fn request_host<B>(req: &Request<B>) -> Option<Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    let raw = raw.rsplit_once('@').map_or(raw, |(_, host)| host);
    let host = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        raw.split_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// Find the route for `req`, whose canonical path is `path`.
pub fn find_route<B>(table: &RouteTable, req: &Request<B>, path: &str) -> Option<RouteMatch> {
    let host = request_host(req);
    table.find(&RequestView {
        host: host.as_deref(),
        path,
        method: req.method(),
        headers: req.headers(),
        query: req.uri().query(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(uri: &str, host_header: Option<&str>) -> Option<String> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host_header {
            b = b.header("host", h);
        }
        let req = b.body(()).unwrap();
        request_host(&req).map(|h| h.into_owned())
    }

    #[test]
    fn host_comes_from_authority_or_header_without_port() {
        assert_eq!(
            host_of("/", Some("API.Example.com:8080")).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            host_of("http://a.b/x", Some("ignored")).as_deref(),
            Some("a.b")
        );
        assert_eq!(host_of("/", Some("[::1]:80")).as_deref(), Some("::1"));
        assert_eq!(
            host_of("/", Some("example.com.")).as_deref(),
            Some("example.com")
        );
        assert_eq!(host_of("/", None), None);
    }
}
