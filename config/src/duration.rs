//! Human durations in config (`5s`, `250ms`, `1m30s`): parsing, printing, serde.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way people write them: `5s`, `250ms`, `1h 30m`.
/// A bare number is rejected: `timeout: 5` could mean seconds or milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 5s, 250ms or 1m30s"))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 5s, 250ms or 1m30s")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a bare number ({v}) is ambiguous; write a unit, like {v}s or {v}ms"
                )))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a bare number ({v}) is ambiguous; write a unit, like 5s or 250ms"
                )))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a bare number ({v}) is ambiguous; write a unit, like 5s or 250ms"
                )))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(
            "5s".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(5)
        );
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            "1m30s".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn rejects_bare_numbers_and_garbage() {
        let err = serde_json::from_str::<HumanDuration>("5").unwrap_err();
        assert!(err.to_string().contains("ambiguous"), "{err}");
        assert!("five seconds".parse::<HumanDuration>().is_err());
    }
}
