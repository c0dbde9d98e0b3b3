//! Edge security config: the `security:` section (global defaults), each listener's and each
//! route's partial override, `listeners[].proxy_protocol`; their validation with field paths and
//! the compiled [`SecurityPolicy`] per listener and per (listener, route). Pure: no sockets.

pub mod bots;
pub mod compile;
pub mod model;
pub mod validate;

pub use compile::{
    BodyRate, BotRules, IpList, ListenerSecurity, SecurityPolicy, WafSpec, compile_listener,
};
pub use model::{ByteSize, SecurityConfig, WafMode};
pub use validate::validate_security;

use serde_json::Value;

/// RFC 7396 merge patch: objects merge key by key, `null` removes (back to the default), any
/// other value (lists included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// `base` with each layer merged over it in turn, as a typed config. The error is the field path
/// inside the section and serde's reason.
pub fn layered(
    base: &SecurityConfig,
    layers: &[&Value],
) -> Result<SecurityConfig, (String, String)> {
    let mut value = serde_json::to_value(base).map_err(|e| (String::new(), e.to_string()))?;
    for layer in layers {
        merge_patch(&mut value, layer);
    }
    serde_path_to_error::deserialize::<_, SecurityConfig>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.inner().to_string())
    })
}

#[cfg(test)]
mod tests;
