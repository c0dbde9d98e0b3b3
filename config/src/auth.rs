//! Authentication config: the `auth:` section (JWT issuers, introspection endpoints, API-key
//! and Argon2 settings), `consumers:` with their credentials, and each route's `auth:` policy —
//! serde model, validation with field paths, and the compiled form the node's auth filter
//! reads. Pure: no sockets, no clocks (key parsing and signature checks are plain functions).

pub mod compile;
pub mod keys;
pub mod model;
pub mod validate;

pub use compile::{
    AuthMethod, ClientSecret, CompiledAuth, Consumer, CredentialRef, HashedCredential,
    IntrospectionSpec, JwksSpec, JwtProviderSpec, RouteAuth, RoutePolicy, TokenSource,
    compile_auth, compile_route_auth,
};
pub use model::{AuthConfig, ConsumerConfig, RouteAuthConfig};
pub use validate::validate_auth;

#[cfg(test)]
mod tests;
