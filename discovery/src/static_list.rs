//! A fixed list of endpoints from configuration: yields it once, then never changes.

use crate::endpoint::EndpointSet;
use crate::error::DiscoveryError;
use crate::source::EndpointSource;

/// Endpoints written in the configuration.
#[derive(Debug, Clone)]
pub struct StaticSource {
    pending: Option<EndpointSet>,
}

impl StaticSource {
    pub fn new(endpoints: EndpointSet) -> Self {
        Self {
            pending: Some(endpoints),
        }
    }
}

impl EndpointSource for StaticSource {
    /// The configured set on the first call; every later call pends forever.
    async fn next_update(&mut self) -> Result<EndpointSet, DiscoveryError> {
        match self.pending.take() {
            Some(set) => Ok(set),
            None => std::future::pending().await,
        }
    }
}
