//! Prometheus text-format metrics, hand-rolled over atomics.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upload latency histogram bucket bounds (seconds).
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

#[derive(Default)]
pub struct Metrics {
    /// Responses by status class 1xx..5xx.
    pub responses: [AtomicU64; 5],
    pub updates_accepted: AtomicU64,
    pub updates_rejected: AtomicU64,
    pub rounds: AtomicU64,
    pub global_version: AtomicU64,
    pub adapter_reads: AtomicU64,
    pub adapter_writes: AtomicU64,
    upload_buckets: [AtomicU64; BUCKETS.len()],
    upload_count: AtomicU64,
    upload_sum_us: AtomicU64,
}

impl Metrics {
    pub fn response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Relaxed);
    }

    pub fn upload_latency(&self, secs: f64) {
        for (b, bound) in self.upload_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.upload_count.fetch_add(1, Relaxed);
        self.upload_sum_us.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    pub fn render(&self, backend: &str) -> String {
        let mut s = String::new();
        let g = |x: &AtomicU64| x.load(Relaxed);
        let _ = writeln!(s, "# TYPE sona_http_responses_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                s,
                "sona_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                g(c)
            );
        }
        for (name, help, v) in [
            (
                "sona_updates_accepted_total",
                "counter",
                &self.updates_accepted,
            ),
            (
                "sona_updates_rejected_total",
                "counter",
                &self.updates_rejected,
            ),
            ("sona_rounds_total", "counter", &self.rounds),
            ("sona_global_version", "gauge", &self.global_version),
            ("sona_adapter_reads_total", "counter", &self.adapter_reads),
            ("sona_adapter_writes_total", "counter", &self.adapter_writes),
        ] {
            let _ = writeln!(s, "# TYPE {name} {help}\n{name} {}", g(v));
        }
        let _ = writeln!(s, "# TYPE sona_upload_seconds histogram");
        for (b, bound) in self.upload_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(s, "sona_upload_seconds_bucket{{le=\"{bound}\"}} {}", g(b));
        }
        let n = g(&self.upload_count);
        let _ = writeln!(s, "sona_upload_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            s,
            "sona_upload_seconds_sum {}",
            g(&self.upload_sum_us) as f64 / 1e6
        );
        let _ = writeln!(s, "sona_upload_seconds_count {n}");
        let _ = writeln!(
            s,
            "# TYPE sona_store_info gauge\nsona_store_info{{backend=\"{backend}\"}} 1"
        );
        s
    }
}
