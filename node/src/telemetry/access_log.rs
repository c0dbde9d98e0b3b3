//! Access logs: one JSON object per line per request, written by the telemetry thread to
//! stdout or an appended file (reopened on SIGUSR1 for logrotate). Credentials never reach
//! the file: Authorization, Proxy-Authorization, Cookie, Set-Cookie and configured names are
//! replaced by `[REDACTED]` in logged headers and query parameters.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meshgate_config::telemetry::AccessLogSpec;
use serde::Serialize;

use super::recorder::{FinishedRequest, RecorderCounters};

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[REDACTED]";
/// Bytes buffered before a write reaches the file (flushed at least every write interval).
const WRITE_BUFFER: usize = 64 * 1024;

/// One access-log line.
#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a str,
    pub path: Cow<'a, str>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
    pub gateway_ms: f64,
    pub route: &'a str,
    pub upstream: Option<&'a str>,
    pub upstream_endpoint: Option<String>,
    pub consumer: Option<&'a str>,
    pub user_agent: Option<Cow<'a, str>>,
    pub tls_version: Option<&'a str>,
    pub listener: &'a str,
    pub trace_id: Option<&'a str>,
    pub aborted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<&'a str, Cow<'a, str>>>,
}

impl<'a> AccessLine<'a> {
    pub fn new(r: &'a FinishedRequest, spec: &AccessLogSpec) -> Self {
        let path = match (spec.include_query, r.uri.query()) {
            (true, Some(query)) => Cow::Owned(format!(
                "{}?{}",
                r.uri.path(),
                redact_query(query, &spec.redact)
            )),
            _ => Cow::Borrowed(r.uri.path()),
        };
        let headers = (!spec.headers.is_empty()).then(|| {
            r.headers
                .iter()
                .map(|(name, value)| {
                    let shown = if is_redacted(name.as_str(), &spec.redact) {
                        Cow::Borrowed(REDACTED)
                    } else {
                        String::from_utf8_lossy(value.as_bytes())
                    };
                    (name.as_str(), shown)
                })
                .collect()
        });
        Self {
            time: humantime::format_rfc3339_millis(r.time).to_string(),
            request_id: r.request_id.to_str().unwrap_or(""),
            client_ip: r.client_ip,
            method: r.method.as_str(),
            path,
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration_ms: millis(r.total),
            upstream_ms: r.upstream_time.map(millis),
            gateway_ms: millis(r.gateway_time),
            route: &r.route,
            upstream: r.upstream.as_deref(),
            upstream_endpoint: r.endpoint.map(|e| e.to_string()),
            consumer: r.consumer.as_deref(),
            user_agent: r
                .user_agent
                .as_ref()
                .map(|ua| String::from_utf8_lossy(ua.as_bytes())),
            tls_version: r.tls_version,
            listener: &r.listener,
            trace_id: r.trace_id.as_deref(),
            aborted: r.aborted,
            headers,
        }
    }
}

/// Milliseconds with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn is_redacted(name: &str, redact: &[String]) -> bool {
    redact.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// The query with the values of redacted parameters replaced (names compared after
/// percent-decoding, so `%74oken` is `token`).
pub fn redact_query(query: &str, redact: &[String]) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let plain = name.replace('+', " ");
            let decoded = percent_encoding::percent_decode_str(&plain).decode_utf8_lossy();
            if is_redacted(&decoded, redact) && !value.is_empty() {
                format!("{name}={REDACTED}")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

enum Output {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
    /// The file could not be opened; lines are counted as write errors until a reopen works.
    Broken {
        path: PathBuf,
    },
}

/// The writer the telemetry thread owns.
pub struct AccessLogWriter {
    spec: AccessLogSpec,
    output: Output,
    line: Vec<u8>,
}

impl AccessLogWriter {
    pub fn open(spec: AccessLogSpec, counters: &RecorderCounters) -> Self {
        let output = open_output(spec.path.as_ref(), counters);
        Self {
            spec,
            output,
            line: Vec::with_capacity(512),
        }
    }

    /// New settings; the file is reopened only when its path changed.
    pub fn reconfigure(&mut self, spec: AccessLogSpec, counters: &RecorderCounters) {
        let moved = spec.path != self.spec.path;
        self.spec = spec;
        if moved {
            self.flush(counters);
            self.output = open_output(self.spec.path.as_ref(), counters);
        }
    }

    pub fn write(&mut self, record: &FinishedRequest, counters: &RecorderCounters) {
        self.line.clear();
        if serde_json::to_writer(&mut self.line, &AccessLine::new(record, &self.spec)).is_err() {
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.line.push(b'\n');
        let written = match &mut self.output {
            Output::Stdout(out) => out.write_all(&self.line),
            Output::File { file, .. } => file.write_all(&self.line),
            Output::Broken { .. } => Err(std::io::Error::other("access log file is not open")),
        };
        let counter = match written {
            Ok(()) => &counters.lines,
            Err(_) => &counters.write_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn flush(&mut self, counters: &RecorderCounters) {
        let flushed = match &mut self.output {
            Output::Stdout(out) => out.flush(),
            Output::File { file, .. } => file.flush(),
            Output::Broken { .. } => Ok(()),
        };
        if flushed.is_err() {
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Close the file and open the path again: after logrotate renamed it, new lines go to a
    /// new file at the configured path.
    pub fn reopen(&mut self, counters: &RecorderCounters) {
        self.flush(counters);
        let path = match &self.output {
            Output::File { path, .. } | Output::Broken { path } => path.clone(),
            Output::Stdout(_) => return,
        };
        self.output = open_output(Some(&path), counters);
        ::tracing::info!(path = %path.display(), "access log reopened");
    }
}

fn open_output(path: Option<&PathBuf>, counters: &RecorderCounters) -> Output {
    let Some(path) = path else {
        return Output::Stdout(BufWriter::with_capacity(WRITE_BUFFER, std::io::stdout()));
    };
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => Output::File {
            path: path.clone(),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
        },
        Err(e) => {
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
            ::tracing::error!(path = %path.display(), error = %e, "cannot open the access log; lines are dropped until it can be reopened (SIGUSR1)");
            Output::Broken { path: path.clone() }
        }
    }
}

#[cfg(test)]
mod tests;
