//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) on listeners behind an L4 load
//! balancer: the header is read before TLS or HTTP, within the header timeout, and its source
//! address becomes the connection's client. A listener with `proxy_protocol: true` requires the
//! header (a connection without one is closed: accepting both would let clients forge it).
//! Parsing is `proxy-header`'s; bytes read past the header stay in its stream wrapper.

use std::net::SocketAddr;
use std::time::Duration;

use proxy_header::io::ProxiedStream;
use proxy_header::{ParseConfig, ProxyHeader};
use tokio::net::TcpStream;

/// Why a connection was closed while reading its PROXY header.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(#[source] std::io::Error),
}

/// Read the header; returns the stream (positioned after it) and the client it names. `None`
/// for `LOCAL` (v2) and `UNKNOWN` (v1) headers: health checks of the balancer itself, whose
/// connection address is then the client.
pub async fn accept(
    stream: TcpStream,
    timeout: Duration,
) -> Result<(ProxiedStream<TcpStream>, Option<SocketAddr>), ProxyProtocolError> {
    let config = ParseConfig {
        include_tlvs: false,
        ..ParseConfig::default()
    };
    let read = ProxiedStream::create_from_tokio(stream, config);
    let stream = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyProtocolError::Timeout(timeout))?
        .map_err(ProxyProtocolError::Invalid)?;
    let source = client_of(stream.proxy_header());
    Ok((stream, source))
}

fn client_of(header: &ProxyHeader<'_>) -> Option<SocketAddr> {
    header.proxied_address().map(|a| a.source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_header::{Protocol, ProxiedAddress};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn through(bytes: Vec<u8>) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyProtocolError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let (stream, _) = listener.accept().await.unwrap();
        let result = accept(stream, Duration::from_secs(5)).await;
        client.await.unwrap();
        let (mut stream, source) = result?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        Ok((source, rest))
    }

    fn header(version: u8, src: &str, dst: &str) -> Vec<u8> {
        let h = ProxyHeader::with_address(ProxiedAddress {
            protocol: Protocol::Stream,
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        });
        let mut out = Vec::new();
        if version == 1 {
            h.encode_v1(&mut out).unwrap();
        } else {
            h.encode_v2(&mut out).unwrap();
        }
        out
    }

    #[tokio::test]
    async fn v1_and_v2_name_the_client_and_keep_the_bytes_after_them() {
        for (version, src, dst) in [
            (1, "203.0.113.9:51000", "10.0.0.1:443"),
            (2, "203.0.113.9:51000", "10.0.0.1:443"),
            (1, "[2001:db8::9]:51000", "[2001:db8::1]:443"),
            (2, "[2001:db8::9]:51000", "[2001:db8::1]:443"),
        ] {
            let mut bytes = header(version, src, dst);
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let (source, rest) = through(bytes).await.unwrap();
            assert_eq!(source, Some(src.parse().unwrap()), "v{version}");
            assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
        }
    }

    #[tokio::test]
    async fn unknown_and_local_headers_name_nobody() {
        let (source, _) = through(b"PROXY UNKNOWN\r\n".to_vec()).await.unwrap();
        assert_eq!(source, None);
        let mut local = Vec::new();
        ProxyHeader::default().encode_v2(&mut local).unwrap();
        let (source, _) = through(local).await.unwrap();
        assert_eq!(source, None);
    }

    /// Fuzz-style: truncations, garbage and oversized lines are refused, never accepted.
    #[tokio::test]
    async fn malformed_headers_are_refused() {
        let v2 = header(2, "203.0.113.9:51000", "10.0.0.1:443");
        let mut cases: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
            b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n".to_vec(),
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n".to_vec(),
            format!("PROXY TCP4 {} 5.6.7.8 1 2\r\n", "1".repeat(200)).into_bytes(),
            v2[..v2.len() - 3].to_vec(),
            b"PROXY TCP4 1.2.3.4".to_vec(),
        ];
        let mut bad_version = v2.clone();
        bad_version[12] = 0x31;
        cases.push(bad_version);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..64 {
            let mut mutated = v2.clone();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % 16;
            mutated[at] ^= 1 << ((seed >> 32) % 8);
            cases.push(mutated);
        }
        for bytes in cases {
            if let Ok((Some(source), _)) = through(bytes.clone()).await {
                // A flipped bit in the address part is still a well-formed header; anything
                // accepted must name a client that the bytes really encode.
                assert!(
                    bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n"),
                    "accepted {bytes:?} as {source}"
                );
            }
        }
    }
}
