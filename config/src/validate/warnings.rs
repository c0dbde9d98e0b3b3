//! Warnings: things that are allowed but probably not meant, reported at load and by
//! `meshgate validate` without rejecting the config. Today: static targets whose host name
//! does not resolve (the node starts anyway and keeps resolving every 30 s; requests to such
//! a target fail until it does).

use crate::error::{ConfigError, FieldPath};
use crate::model::Config;
use crate::validate::split_host_port;

/// Every static target whose host name `resolves` says does not resolve now. IP targets are
/// not looked up. `resolves` is the system resolver in the binary (it blocks: call this off
/// the async workers) and a table in tests.
pub fn warnings(config: &Config, resolves: &dyn Fn(&str, u16) -> bool) -> Vec<ConfigError> {
    let mut found = Vec::new();
    let root = FieldPath::root().field("upstreams");
    for (i, upstream) in config.upstreams.iter().enumerate() {
        for (j, target) in upstream.targets.iter().enumerate() {
            let Ok((host, port)) = split_host_port(&target.address) else {
                continue;
            };
            if host.parse::<std::net::IpAddr>().is_ok() || resolves(&host, port) {
                continue;
            }
            found.push(
                root.index(i)
                    .field("targets")
                    .index(j)
                    .field("address")
                    .error(format!(
                        "{host:?} does not resolve now; requests to this target fail until it does"
                    )),
            );
        }
    }
    found
}
