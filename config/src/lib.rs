//! meshgate's declarative configuration: the serde model, loading from YAML or JSON with
//! `${ENV}` substitution, validation that reports every problem with its field path, and
//! `compile()` into the immutable runtime form the data plane reads. Pure: no sockets, no clocks.
//!
//! ```
//! let text = r#"
//! listeners: [{ name: main, address: "127.0.0.1:0" }]
//! routes:
//!   - match: { paths: ["/hello"] }
//!     respond: { status: 200, body: "hi\n" }
//! "#;
//! let config = meshgate_config::parse_str(text, meshgate_config::Format::Yaml).unwrap();
//! let compiled = meshgate_config::compile(&config).unwrap();
//! assert_eq!(compiled.listeners.len(), 1);
//! ```

pub mod auth;
pub mod compile;
pub mod duration;
pub mod error;
pub mod load;
pub mod model;
pub mod outbound_tls;
pub mod path_template;
pub mod rate_limit;
pub mod resilience;
pub mod route_table;
pub mod security;
pub mod telemetry;
pub mod validate;

pub use compile::{
    CompiledConfig, CompiledRoute, HostPolicy, ListenerSpec, PathRewrite, ProxySpec, RespondSpec,
    RouteAction, TargetSpec, UpstreamSpec, compile,
};
pub use error::{ConfigError, ConfigErrors, LoadError};
pub use load::{Format, load_file, load_text, parse_str};
pub use model::Config;
pub use route_table::{RequestView, RouteMatch, RouteTable};
pub use telemetry::TelemetrySpec;
pub use validate::{validate_runnable, warnings};
