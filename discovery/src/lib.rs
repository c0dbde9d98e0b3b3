//! meshgate's service discovery: endpoint sets from static lists, DNS, Consul and etcd, and the
//! registration of the local service in Consul or etcd. No actor lives here: the control plane
//! drives these sources and registrations; nothing in this crate touches the request path.
//!
//! Every source implements [`EndpointSource`]: `next_update()` blocks until the endpoint set
//! changed and returns the full new [`EndpointSet`]. After it returned an error, the next `Ok`
//! always carries the full current set (even if unchanged), which is how a caller knows its
//! last-known endpoints are fresh again. [`drive_source`] is that loop, with [`Backoff`].

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]

pub mod consul;
pub mod dns;
pub mod endpoint;
pub mod error;
pub mod etcd;
pub mod source;
pub mod static_list;

pub use consul::{
    CheckStatus, ConsulClient, ConsulConfig, ConsulRegistration, ConsulWatch, ConsulWatchConfig,
    Heartbeat, RateLimit, ServiceRegistration, ServiceWeights,
};
pub use dns::{DnsQuery, DnsWatch, DnsWatchConfig};
pub use endpoint::{Endpoint, EndpointSet};
pub use error::{Backend, DiscoveryError};
pub use etcd::{
    EtcdClient, EtcdConfig, EtcdRegistration, EtcdRegistrationHandle, EtcdWatch, EtcdWatchConfig,
};
/// The workspace's one backoff type, re-exported because [`drive_source`] takes one.
pub use meshgate_backoff::Backoff;
pub use source::{AnySource, EndpointSource, SourceEvent, drive_source, source_backoff};
pub use static_list::StaticSource;
