//! Rate-limit config: the `rate_limiting:` section (Redis connection, response header names,
//! named policies) and each route's `rate_limit:` list (names, inline policies, overrides) —
//! serde model, validation with field paths, and the compiled form the node's rate-limit
//! filter reads. Pure: no sockets, no clocks.

pub mod compile;
pub mod model;
pub mod validate;

pub use compile::{
    Algorithm, CompiledRateLimiting, FailureMode, HeaderNames, KeyPart, PolicySpec, PolicyStore,
    RedisSpec, RouteRateLimit, Window, compile_rate_limiting, compile_route_rate_limit,
};
pub use model::{RateLimitingConfig, RouteRateLimitConfig};
pub use validate::validate_rate_limits;

#[cfg(test)]
mod tests;
