//! Support code for meshgate's end-to-end tests: mock backends, HTTP/1.1 and h2c clients,
//! harnesses that run a node in-process or as the real binary, and the outside systems
//! (etcd, DNS, a Consul double, Redis) the discovery and rate-limit tests need.
#![allow(clippy::unwrap_used)]

pub mod backends;
pub mod client;
pub mod consul_double;
pub mod dns_server;
pub mod etcd_server;
pub mod harness;
pub mod idp;
pub mod net;
pub mod otlp_receiver;
pub mod prometheus;
pub mod redis_server;
pub mod tls;
pub mod upstreams;

pub use backends::Backend;
pub use client::{BOTH, Proto, TestClient, TestResponse};
pub use harness::{NodeProcess, TestNode, eventually};
