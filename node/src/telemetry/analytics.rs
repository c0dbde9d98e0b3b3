//! Usage analytics, the input to billing: requests, bytes and latency summed per consumer ×
//! route × status class × UTC day, bounded in memory (`max_entries` keys, `retention_days`
//! days), owned by the telemetry thread and queried through it; rendered as JSON or CSV for
//! `GET /analytics/usage?from=&to=&consumer=&format=`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_config::telemetry::AnalyticsSpec;
use serde::Serialize;
use serde_json::json;

use super::metrics::{STATUS_CLASSES, status_class};
use super::recorder::FinishedRequest;

/// The consumer and route under which requests are counted once `max_entries` is reached, so
/// that totals stay right even when the breakdown cannot grow.
pub const OVERFLOW: &str = "_overflow";
const SECONDS_PER_DAY: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UsageKey {
    day: i64,
    consumer: Option<Arc<str>>,
    route: Arc<str>,
    class: u8,
}

/// Sums for one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Total time, summed, in microseconds (exact integer arithmetic; shown in ms).
    pub latency_us_sum: u64,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.latency_us_sum += other.latency_us_sum;
    }
}

/// The store the telemetry thread owns.
#[derive(Debug)]
pub struct UsageStore {
    spec: AnalyticsSpec,
    entries: BTreeMap<UsageKey, Usage>,
    newest_day: i64,
    overflowed: u64,
}

impl UsageStore {
    pub fn new(spec: AnalyticsSpec) -> Self {
        Self {
            spec,
            entries: BTreeMap::new(),
            newest_day: i64::MIN,
            overflowed: 0,
        }
    }

    pub fn reconfigure(&mut self, spec: AnalyticsSpec) {
        self.spec = spec;
        self.prune();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Requests counted under [`OVERFLOW`] so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    pub fn add(&mut self, r: &FinishedRequest) {
        let day = day_of(r.time);
        if day > self.newest_day {
            self.newest_day = day;
            self.prune();
        }
        if day <= self.newest_day - i64::from(self.spec.retention_days) {
            return;
        }
        let mut key = UsageKey {
            day,
            consumer: r.consumer.clone(),
            route: r.route.clone(),
            class: status_class(r.status) as u8,
        };
        if !self.entries.contains_key(&key) && self.entries.len() >= self.spec.max_entries {
            self.overflowed += 1;
            key.consumer = Some(OVERFLOW.into());
            key.route = OVERFLOW.into();
        }
        let usage = Usage {
            requests: 1,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            latency_us_sum: u64::try_from(r.total.as_micros()).unwrap_or(u64::MAX),
        };
        // The overflow key may push the map one past `max_entries`, once per day and class.
        self.entries.entry(key).or_default().add(&usage);
    }

    /// Drop the days that fell out of the retention window.
    fn prune(&mut self) {
        let first_kept = self.newest_day - i64::from(self.spec.retention_days) + 1;
        self.entries.retain(|k, _| k.day >= first_kept);
    }

    pub fn query(&self, q: &UsageQuery) -> UsageReport {
        let rows = self
            .entries
            .iter()
            .filter(|(k, _)| q.from.is_none_or(|from| k.day >= from))
            .filter(|(k, _)| q.to.is_none_or(|to| k.day <= to))
            .filter(|(k, _)| {
                q.consumer
                    .as_deref()
                    .is_none_or(|c| k.consumer.as_deref() == Some(c))
            })
            .map(|(k, usage)| UsageRow {
                day: format_day(k.day),
                consumer: k.consumer.as_deref().map(str::to_string),
                route: k.route.to_string(),
                status_class: STATUS_CLASSES[usize::from(k.class).min(4)],
                usage: *usage,
            })
            .collect();
        UsageReport {
            query: q.clone(),
            rows,
        }
    }
}

/// Which usage to report; days are inclusive, as days since the Unix epoch (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub consumer: Option<String>,
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFormat {
    Json,
    Csv,
}

impl UsageQuery {
    /// Parse `from=YYYY-MM-DD&to=YYYY-MM-DD&consumer=NAME&format=json|csv`; the format falls
    /// back to `accept` (`text/csv`), then JSON.
    pub fn parse(query: Option<&str>, accept: Option<&str>) -> Result<(Self, UsageFormat), String> {
        let mut q = UsageQuery::default();
        let mut format = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            match name {
                "from" => q.from = Some(parse_day(&value).ok_or_else(|| bad_day("from", &value))?),
                "to" => q.to = Some(parse_day(&value).ok_or_else(|| bad_day("to", &value))?),
                "consumer" => q.consumer = Some(value),
                "format" => {
                    format = Some(match value.as_str() {
                        "json" => UsageFormat::Json,
                        "csv" => UsageFormat::Csv,
                        other => return Err(format!("format {other:?}: use json or csv")),
                    });
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (from, to, consumer, format)"
                    ));
                }
            }
        }
        if let (Some(from), Some(to)) = (q.from, q.to)
            && from > to
        {
            return Err("from is after to".into());
        }
        let format = format.unwrap_or_else(|| {
            if accept.is_some_and(|a| a.contains("text/csv")) {
                UsageFormat::Csv
            } else {
                UsageFormat::Json
            }
        });
        Ok((q, format))
    }
}

fn bad_day(name: &str, value: &str) -> String {
    format!("{name}={value:?}: write a date as YYYY-MM-DD")
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub day: String,
    pub consumer: Option<String>,
    pub route: String,
    pub status_class: &'static str,
    #[serde(flatten)]
    pub usage: Usage,
}

/// The answer to a [`UsageQuery`].
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    pub query: UsageQuery,
    pub rows: Vec<UsageRow>,
}

impl UsageReport {
    pub fn empty(query: &UsageQuery) -> Self {
        Self {
            query: query.clone(),
            rows: Vec::new(),
        }
    }

    pub fn totals(&self) -> Usage {
        let mut total = Usage::default();
        for row in &self.rows {
            total.add(&row.usage);
        }
        total
    }

    pub fn to_json(&self) -> String {
        let rows: Vec<_> = self.rows.iter().map(row_json).collect();
        let totals = self.totals();
        let doc = json!({
            "from": self.query.from.map(format_day),
            "to": self.query.to.map(format_day),
            "consumer": self.query.consumer,
            "rows": rows,
            "totals": usage_json(&totals),
        });
        let mut text = doc.to_string();
        text.push('\n');
        text
    }

    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "day,consumer,route,status_class,requests,bytes_in,bytes_out,latency_ms_sum\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                r.day,
                csv_field(r.consumer.as_deref().unwrap_or("")),
                csv_field(&r.route),
                r.status_class,
                r.usage.requests,
                r.usage.bytes_in,
                r.usage.bytes_out,
                latency_ms(r.usage.latency_us_sum)
            );
        }
        out
    }
}

fn row_json(r: &UsageRow) -> serde_json::Value {
    let mut v = usage_json(&r.usage);
    if let Some(map) = v.as_object_mut() {
        map.insert("day".into(), json!(r.day));
        map.insert("consumer".into(), json!(r.consumer));
        map.insert("route".into(), json!(r.route));
        map.insert("status_class".into(), json!(r.status_class));
    }
    v
}

fn usage_json(u: &Usage) -> serde_json::Value {
    json!({
        "requests": u.requests,
        "bytes_in": u.bytes_in,
        "bytes_out": u.bytes_out,
        "latency_ms_sum": latency_ms(u.latency_us_sum),
    })
}

fn latency_ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// RFC 4180: quote a field holding a comma, quote or line break; double inner quotes.
fn csv_field(value: &str) -> Cow<'_, str> {
    if value.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(value)
    }
}

/// Days since the Unix epoch (UTC) of an instant.
pub fn day_of(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    (secs / SECONDS_PER_DAY) as i64
}

/// `YYYY-MM-DD` → days since the epoch.
pub fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if text.len() != 10 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Days since the epoch → `YYYY-MM-DD`.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian, days since 1970-01-01).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
