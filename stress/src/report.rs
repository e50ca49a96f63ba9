//! The results of a run: merged worker figures, the human-readable table and the JSON object.

use crate::worker::WindowReport;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One measured window (the whole run, or one ramp step).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Window {
    /// Target total send rate in messages/s; `None` for as fast as possible.
    pub target_rate: Option<f64>,
    pub seconds: f64,
    pub sent: u64,
    pub sent_per_sec: f64,
    /// Copies owed: for each message sent, the size of its room at that moment.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub delivered_per_sec: f64,
    pub latency_ms: Latency,
    pub errors: u64,
    pub sequence_errors: u64,
    pub unexpected_closes: u64,
    /// Frames that were not stress messages (join notices and the like).
    pub other_frames: u64,
    /// Copies of warm-up messages received during the run.
    pub stale_copies: u64,
    /// How long the last copies took to arrive after sending stopped.
    pub drain_seconds: f64,
    pub client_cpu_percent: f64,
    pub server_cpu_percent: Option<f64>,
    /// CPU other processes used on the CPUs the client and the server may run on (with
    /// `--server-pid`): anything well above zero means the figures are skewed by them.
    pub other_cpu_percent: Option<f64>,
    /// Ramp steps only: whether this rate was sustained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
}

impl Window {
    /// Merges the workers' reports of one window.
    pub fn merge(target_rate: Option<f64>, seconds: f64, reports: &[WindowReport]) -> Self {
        let mut latency = crate::worker::latency_histogram();
        let mut w = Window {
            target_rate,
            seconds,
            ..Window::default()
        };
        for r in reports {
            latency.add(&r.latency).expect("same histogram bounds");
            w.sent += r.sent;
            w.expected += r.expected;
            w.delivered += r.delivered;
            w.stale_copies += r.stale;
            w.other_frames += r.other;
            w.errors += r.errors;
            w.sequence_errors += r.seq_errors;
            w.unexpected_closes += r.closes;
        }
        w.lost = w.expected.saturating_sub(w.delivered);
        if seconds > 0.0 {
            w.sent_per_sec = w.sent as f64 / seconds;
            w.delivered_per_sec = w.delivered as f64 / seconds;
        }
        w.latency_ms = Latency::of(&latency);
        w
    }

    /// Nothing lost, duplicated, misrouted or broken.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.delivered == self.expected
            && self.errors == 0
            && self.sequence_errors == 0
            && self.unexpected_closes == 0
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Connect {
    pub requested: usize,
    pub established: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Wall time of the whole connect phase (all connections ready or failed).
    pub seconds: f64,
    pub per_sec: f64,
    /// Per connection, from connect() until joined.
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Ramp {
    pub p99_bound_ms: f64,
    /// The highest rate sustained: p99 within the bound, nothing lost, no errors.
    pub best: Option<Window>,
    pub steps: Vec<Window>,
    /// Why the ramp ended early, if it did.
    pub stopped: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Server {
    pub pid: u32,
    pub rss_before_kib: Option<u64>,
    pub rss_connected_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    /// (connected − before) / established connections.
    pub rss_per_connection_bytes: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub url: String,
    pub connections: usize,
    pub rooms: usize,
    pub senders: usize,
    pub payload_bytes: usize,
    pub threads: usize,
    pub login: bool,
    pub order_check: bool,
    pub connect: Connect,
    /// The fixed-rate or as-fast-as-possible run (absent in ramp mode or without senders).
    pub run: Option<Window>,
    pub ramp: Option<Ramp>,
    pub server: Option<Server>,
    /// Over the whole run, warm-up and setup included.
    pub errors: u64,
    pub first_error: Option<String>,
    pub unexpected_closes: u64,
    pub close_reasons: BTreeMap<String, u64>,
    pub sent_total: u64,
    pub frames_total: u64,
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn window_rows(out: &mut String, w: &Window) {
    let rate = w
        .target_rate
        .map_or("as fast as possible".to_string(), |r| {
            format!("{}/s", si(r))
        });
    let _ = writeln!(out, "  target rate     {rate}, {:.1} s measured", w.seconds);
    let _ = writeln!(
        out,
        "  sent            {} ({}/s)",
        w.sent,
        si(w.sent_per_sec)
    );
    let _ = writeln!(
        out,
        "  delivered       {} of {} expected, lost {} ({} msgs/s)",
        w.delivered,
        w.expected,
        w.lost,
        si(w.delivered_per_sec)
    );
    let l = &w.latency_ms;
    let _ = writeln!(
        out,
        "  latency (ms)    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    let _ = writeln!(
        out,
        "  problems        {} errors, {} sequence errors, {} unexpected closes",
        w.errors, w.sequence_errors, w.unexpected_closes
    );
    let server = w
        .server_cpu_percent
        .map_or(String::new(), |s| format!(", server {s:.0}%"));
    let other = w
        .other_cpu_percent
        .map_or(String::new(), |o| format!(", other processes {o:.0}%"));
    let _ = writeln!(
        out,
        "  cpu (1 core)    client {:.0}%{server}{other}; drained in {:.3} s",
        w.client_cpu_percent, w.drain_seconds
    );
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "stress: {} mode, {}{}\n  {} connections, {} rooms, {} senders, {}-byte payload, {} thread(s)",
            self.mode,
            self.url,
            if self.login { ", logged in" } else { "" },
            self.connections,
            self.rooms,
            self.senders,
            self.payload_bytes,
            self.threads
        );
        let c = &self.connect;
        let _ = writeln!(
            out,
            "connect\n  established     {} of {}, failed {}, in {:.2} s ({}/s)",
            c.established,
            c.requested,
            c.failed,
            c.seconds,
            si(c.per_sec)
        );
        let _ = writeln!(
            out,
            "  time to join    p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            c.latency_ms.p50, c.latency_ms.p99, c.latency_ms.max
        );
        for (why, n) in &c.failures {
            let _ = writeln!(out, "  failed          {n} × {why}");
        }
        if let Some(w) = &self.run {
            let _ = writeln!(out, "run");
            window_rows(&mut out, w);
        }
        if let Some(r) = &self.ramp {
            let _ = writeln!(out, "ramp (p99 bound {} ms)", r.p99_bound_ms);
            let _ = writeln!(
                out,
                "  {:>10} {:>10} {:>12} {:>9} {:>9} {:>8}  ok",
                "rate/s", "sent/s", "delivered/s", "p50 ms", "p99 ms", "lost"
            );
            for s in &r.steps {
                let _ = writeln!(
                    out,
                    "  {:>10} {:>10} {:>12} {:>9.3} {:>9.3} {:>8}  {}",
                    si(s.target_rate.unwrap_or(0.0)),
                    si(s.sent_per_sec),
                    si(s.delivered_per_sec),
                    s.latency_ms.p50,
                    s.latency_ms.p99,
                    s.lost,
                    if s.passed == Some(true) { "yes" } else { "no" }
                );
            }
            if let Some(why) = &r.stopped {
                let _ = writeln!(out, "  stopped early: {why}");
            }
            match &r.best {
                Some(b) => {
                    let _ = writeln!(out, "best sustained");
                    window_rows(&mut out, b);
                }
                None => {
                    let _ = writeln!(out, "best sustained  none: no step met the bound");
                }
            }
        }
        if let Some(s) = &self.server {
            let per = s
                .rss_per_connection_bytes
                .map_or("?".to_string(), |b| format!("{:.2} KiB", b / 1024.0));
            let _ = writeln!(
                out,
                "server (pid {})\n  rss             {} before, {} connected ({per} per connection), {} at end, peak {}",
                s.pid,
                kib(s.rss_before_kib),
                kib(s.rss_connected_kib),
                kib(s.rss_end_kib),
                kib(s.rss_peak_kib)
            );
        }
        let _ = writeln!(
            out,
            "totals\n  {} messages sent, {} frames received, {} errors, {} unexpected closes",
            self.sent_total, self.frames_total, self.errors, self.unexpected_closes
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(out, "  first error     {e}");
        }
        for (why, n) in &self.close_reasons {
            let _ = writeln!(out, "  closed          {n} × {why}");
        }
        out
    }
}
