//! The telemetry thread: finished-request records leave the request path through a bounded
//! lock-free queue (a full queue drops the record and counts it; a request never waits), and
//! one background thread writes them as access-log lines and folds them into usage analytics.
//! Blocking file I/O happens only on that thread, never on a runtime worker.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use crossbeam_queue::ArrayQueue;
use http::{HeaderName, HeaderValue, Method, Uri};
use meshgate_config::telemetry::{AccessLogSpec, AnalyticsSpec};
use tokio::sync::oneshot;

use super::access_log::AccessLogWriter;
use super::analytics::{UsageQuery, UsageReport, UsageStore};
use super::metrics::exposition::RecorderStats;

/// How often the thread wakes to write what queued up when nothing else wakes it; it is also
/// woken as soon as the queue is half full.
const WRITE_INTERVAL: Duration = Duration::from_millis(50);

/// What the access log and analytics know about one finished request.
#[derive(Debug)]
pub struct FinishedRequest {
    /// When the request arrived.
    pub time: SystemTime,
    pub request_id: HeaderValue,
    pub client_ip: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub total: Duration,
    pub upstream_time: Option<Duration>,
    pub gateway_time: Duration,
    /// `-` when no route matched.
    pub route: Arc<str>,
    /// `None` for direct responses.
    pub upstream: Option<Arc<str>>,
    pub endpoint: Option<SocketAddr>,
    pub consumer: Option<Arc<str>>,
    pub user_agent: Option<HeaderValue>,
    pub tls_version: Option<&'static str>,
    pub listener: Arc<str>,
    pub trace_id: Option<String>,
    /// The extra headers the access log is configured to show.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The response did not end cleanly (client gone, upstream broke mid-body).
    pub aborted: bool,
}

/// What the thread does with records: settings of one config generation.
#[derive(Debug, Clone, Default)]
pub struct RecorderSettings {
    pub access_log: Option<AccessLogSpec>,
    pub analytics: Option<AnalyticsSpec>,
}

enum Control {
    /// The queue filled past half: write now.
    Wake,
    Configure(RecorderSettings),
    /// Reopen the access-log file (logrotate moved it).
    Reopen,
    /// Write everything queued so far, then answer.
    Flush(oneshot::Sender<()>),
    Usage(UsageQuery, oneshot::Sender<UsageReport>),
}

#[derive(Debug, Default)]
pub struct RecorderCounters {
    pub lines: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    pub analytics_entries: AtomicU64,
    pub analytics_overflow: AtomicU64,
}

/// The request path's side: a bounded queue and a way to wake the thread.
pub struct Recorder {
    queue: Arc<ArrayQueue<FinishedRequest>>,
    control: mpsc::Sender<Control>,
    wake_pending: Arc<AtomicBool>,
    counters: Arc<RecorderCounters>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl Recorder {
    /// Start the thread with a queue of `capacity` records.
    pub fn start(capacity: usize, settings: RecorderSettings) -> std::io::Result<Arc<Self>> {
        let queue = Arc::new(ArrayQueue::new(capacity.max(1)));
        let (control, commands) = mpsc::channel();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(RecorderCounters::default());
        let mut worker = Worker {
            queue: queue.clone(),
            wake_pending: wake_pending.clone(),
            counters: counters.clone(),
            access_log: None,
            analytics: None,
        };
        // Opening the log file is blocking I/O: the thread does it, not the caller.
        std::thread::Builder::new()
            .name("meshgate-telemetry".into())
            .spawn(move || {
                worker.configure(settings);
                worker.run(commands);
            })?;
        Ok(Arc::new(Self {
            queue,
            control,
            wake_pending,
            counters,
        }))
    }

    /// Hand a record to the thread; never blocks. A full queue drops it (counted).
    pub fn push(&self, record: FinishedRequest) {
        if self.queue.push(record).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if self.queue.len() * 2 >= self.queue.capacity()
            && !self.wake_pending.swap(true, Ordering::AcqRel)
        {
            let _ = self.control.send(Control::Wake);
        }
    }

    pub fn configure(&self, settings: RecorderSettings) {
        let _ = self.control.send(Control::Configure(settings));
    }

    /// Close and reopen the access-log file (SIGUSR1, after logrotate renamed it).
    pub fn reopen(&self) {
        let _ = self.control.send(Control::Reopen);
    }

    /// Wait until everything pushed before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Query usage analytics (after writing what is queued, so totals include it).
    pub async fn usage(&self, query: UsageQuery) -> Option<UsageReport> {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Usage(query, tx)).ok()?;
        rx.await.ok()
    }

    pub fn stats(&self) -> RecorderStats {
        let c = &self.counters;
        RecorderStats {
            lines: c.lines.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            analytics_entries: c.analytics_entries.load(Ordering::Relaxed),
            analytics_overflow: c.analytics_overflow.load(Ordering::Relaxed),
        }
    }
}

/// The thread's side: owns the writer and the analytics store.
struct Worker {
    queue: Arc<ArrayQueue<FinishedRequest>>,
    wake_pending: Arc<AtomicBool>,
    counters: Arc<RecorderCounters>,
    access_log: Option<AccessLogWriter>,
    analytics: Option<UsageStore>,
}

impl Worker {
    fn run(mut self, commands: mpsc::Receiver<Control>) {
        loop {
            let command = commands.recv_timeout(WRITE_INTERVAL);
            self.drain();
            match command {
                Ok(Control::Wake) => self.wake_pending.store(false, Ordering::Release),
                Ok(Control::Configure(settings)) => self.configure(settings),
                Ok(Control::Reopen) => {
                    if let Some(log) = &mut self.access_log {
                        log.reopen(&self.counters);
                    }
                }
                Ok(Control::Flush(done)) => {
                    self.flush();
                    let _ = done.send(());
                }
                Ok(Control::Usage(query, reply)) => {
                    let report = match &self.analytics {
                        Some(store) => store.query(&query),
                        None => UsageReport::empty(&query),
                    };
                    let _ = reply.send(report);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            self.flush();
        }
    }

    fn drain(&mut self) {
        // Bounded: at most what was queued when draining began, plus what arrives meanwhile
        // up to one more queue's worth.
        for _ in 0..self.queue.capacity() * 2 {
            let Some(record) = self.queue.pop() else {
                break;
            };
            if let Some(log) = &mut self.access_log {
                log.write(&record, &self.counters);
            }
            if let Some(store) = &mut self.analytics {
                store.add(&record);
            }
        }
        if let Some(store) = &self.analytics {
            self.counters
                .analytics_entries
                .store(store.len() as u64, Ordering::Relaxed);
            self.counters
                .analytics_overflow
                .store(store.overflowed(), Ordering::Relaxed);
        }
    }

    fn flush(&mut self) {
        if let Some(log) = &mut self.access_log {
            log.flush(&self.counters);
        }
    }

    fn configure(&mut self, settings: RecorderSettings) {
        self.flush();
        self.access_log = match (self.access_log.take(), settings.access_log) {
            (Some(mut writer), Some(spec)) => {
                writer.reconfigure(spec, &self.counters);
                Some(writer)
            }
            (None, Some(spec)) => Some(AccessLogWriter::open(spec, &self.counters)),
            (_, None) => None,
        };
        self.analytics = match (self.analytics.take(), settings.analytics) {
            (Some(mut store), Some(spec)) => {
                store.reconfigure(spec);
                Some(store)
            }
            (None, Some(spec)) => Some(UsageStore::new(spec)),
            (_, None) => None,
        };
    }
}

#[cfg(test)]
mod tests;
