//! The figures of a scenario, the table printed for it, and its JSON form.

use std::time::Duration;

use serde_json::{json, Value};

/// What one side (tsunagi or the baseline) measured in a scenario's measured phase.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Device syncs (one `SyncClient::sync` call, or one baseline sync of a device).
    pub syncs: u64,
    /// Round trips: HTTP requests for tsunagi, message exchanges for the baseline.
    pub round_trips: u64,
    /// HTTP requests answered with an error status, tsunagi only.
    pub http_errors: u64,
    /// Syncs that failed after the client's own retries (`load` only: the device tries
    /// again with its next batch), tsunagi only.
    pub failed_syncs: u64,
    /// Bytes from devices to the server (on the wire, HTTP included, for tsunagi).
    pub bytes_up: u64,
    /// Bytes from the server to devices.
    pub bytes_down: u64,
    /// Latency of each sync request (tsunagi) or round trip (baseline), in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Duration of the measured phase, in seconds.
    pub wall_s: f64,
    /// Changes moved (up and down).
    pub changes: u64,
    /// Activities moved (logged and uploaded, or received).
    pub activities: u64,
    /// Server CPU seconds.
    pub server_cpu_s: Option<f64>,
    /// CPU seconds of the benchmark's own process (the simulated devices and the proxy),
    /// tsunagi only: they share the machine with the server.
    pub client_cpu_s: Option<f64>,
    /// CPU seconds of the PostgreSQL processes serving the database.
    pub database_cpu_s: Option<f64>,
    /// Peak resident set size of the server, in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Database size on disk at the end, in bytes.
    pub database_bytes: Option<u64>,
}

/// The `p`-th percentile (nearest rank) of `values`; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds of a duration.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Figures {
    fn per_second(&self, count: u64) -> f64 {
        if self.wall_s > 0.0 {
            count as f64 / self.wall_s
        } else {
            0.0
        }
    }

    /// Changes per second of the measured phase.
    pub fn changes_per_s(&self) -> f64 {
        self.per_second(self.changes)
    }

    /// Activities per second of the measured phase.
    pub fn activities_per_s(&self) -> f64 {
        self.per_second(self.activities)
    }

    /// Activities per CPU-second of the server side alone (the server process plus, on
    /// PostgreSQL, the database's processes serving it): what the server could accept per
    /// second on each core it had to itself, without the simulated devices sharing the
    /// machine. `None` without CPU figures or activities.
    pub fn activities_per_server_cpu_s(&self) -> Option<f64> {
        let cpu = self.server_cpu_s? + self.database_cpu_s.unwrap_or(0.0);
        (cpu > 0.0 && self.activities > 0).then(|| self.activities as f64 / cpu)
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "syncs": self.syncs,
            "round_trips": self.round_trips,
            "http_errors": self.http_errors,
            "failed_syncs": self.failed_syncs,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "latency_ms": {
                "count": self.latencies_ms.len(),
                "p50": percentile(&self.latencies_ms, 50.0),
                "p95": percentile(&self.latencies_ms, 95.0),
                "p99": percentile(&self.latencies_ms, 99.0),
            },
            "wall_s": self.wall_s,
            "changes": self.changes,
            "activities": self.activities,
            "changes_per_s": self.changes_per_s(),
            "activities_per_s": self.activities_per_s(),
            "activities_per_server_cpu_s": self.activities_per_server_cpu_s(),
            "server_cpu_s": self.server_cpu_s,
            "database_cpu_s": self.database_cpu_s,
            "client_cpu_s": self.client_cpu_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "database_bytes": self.database_bytes,
        })
    }
}

/// The payload floor: the raw Automerge changes that had to move.
#[derive(Debug, Default, Clone, Copy)]
pub struct Floor {
    /// Bytes of changes that had to go up.
    pub up_bytes: u64,
    /// Changes that had to go up.
    pub up_changes: u64,
    /// Bytes of changes that had to come down.
    pub down_bytes: u64,
    /// Changes that had to come down.
    pub down_changes: u64,
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// `reconnect`, `field-day`, ...
    pub name: &'static str,
    /// What was done, in a sentence.
    pub description: String,
    /// `SQLite` or `PostgreSQL`.
    pub backend: &'static str,
    /// The counts it ran with.
    pub params: Value,
    /// The payload floor.
    pub floor: Floor,
    /// For a first sync: the total `save()` size of the documents that came down.
    pub saved_bytes: Option<u64>,
    /// Seconds spent seeding (not measured).
    pub seeding_s: f64,
    /// tsunagi's figures.
    pub tsunagi: Figures,
    /// The standard sync protocol's figures.
    pub baseline: Figures,
}

/// `a / b`, or `None` when `b` is 0.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn ratio_text(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into())
}

/// `1234567` → `1 234 567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn opt_f(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

fn mib(v: Option<u64>) -> String {
    v.map(|v| format!("{:.1}", v as f64 / (1024.0 * 1024.0))).unwrap_or_else(|| "-".into())
}

impl ScenarioReport {
    /// tsunagi's figure divided by the baseline's, for the figures that compare.
    pub fn ratios(&self) -> Value {
        let (t, b) = (&self.tsunagi, &self.baseline);
        let f = |a: u64, b: u64| ratio(a as f64, b as f64);
        json!({
            "round_trips": f(t.round_trips, b.round_trips),
            "bytes_up": f(t.bytes_up, b.bytes_up),
            "bytes_down": f(t.bytes_down, b.bytes_down),
            "bytes_total": f(t.bytes_up + t.bytes_down, b.bytes_up + b.bytes_down),
            "latency_p50": ratio(percentile(&t.latencies_ms, 50.0), percentile(&b.latencies_ms, 50.0)),
            "latency_p99": ratio(percentile(&t.latencies_ms, 99.0), percentile(&b.latencies_ms, 99.0)),
            "changes_per_s": ratio(t.changes_per_s(), b.changes_per_s()),
            "activities_per_s": ratio(t.activities_per_s(), b.activities_per_s()),
            "server_cpu_s": match (t.server_cpu_s, b.server_cpu_s) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => None,
            },
        })
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "backend": self.backend,
            "params": self.params,
            "payload_floor": {
                "up_bytes": self.floor.up_bytes,
                "up_changes": self.floor.up_changes,
                "down_bytes": self.floor.down_bytes,
                "down_changes": self.floor.down_changes,
            },
            "saved_bytes": self.saved_bytes,
            "seeding_s": self.seeding_s,
            "tsunagi": self.tsunagi.to_json(),
            "baseline": self.baseline.to_json(),
            "ratios": self.ratios(),
        })
    }

    /// The table printed for the scenario.
    pub fn table(&self) -> String {
        let (t, b) = (&self.tsunagi, &self.baseline);
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row = |name: &str, a: String, b: String, r: Option<f64>| {
            rows.push([name.to_owned(), a, b, ratio_text(r)]);
        };
        let f = |a: u64, b: u64| ratio(a as f64, b as f64);
        row("syncs", grouped(t.syncs), grouped(b.syncs), None);
        row(
            "round trips (HTTP requests)",
            grouped(t.round_trips),
            grouped(b.round_trips),
            f(t.round_trips, b.round_trips),
        );
        if t.http_errors > 0 {
            row("  answered with an HTTP error", grouped(t.http_errors), "-".into(), None);
        }
        if t.failed_syncs > 0 {
            row("failed syncs (work went up later)", grouped(t.failed_syncs), "-".into(), None);
        }
        let per_sync = |x: &Figures| ratio(x.round_trips as f64, x.syncs as f64);
        row("  per sync", opt_f(per_sync(t), 2), opt_f(per_sync(b), 2), None);
        row("bytes up", grouped(t.bytes_up), grouped(b.bytes_up), f(t.bytes_up, b.bytes_up));
        row("bytes down", grouped(t.bytes_down), grouped(b.bytes_down), f(t.bytes_down, b.bytes_down));
        let floor = self.floor;
        row(
            "  bytes up / payload floor up",
            opt_f(ratio(t.bytes_up as f64, floor.up_bytes as f64), 2),
            opt_f(ratio(b.bytes_up as f64, floor.up_bytes as f64), 2),
            None,
        );
        row(
            "  bytes down / payload floor down",
            opt_f(ratio(t.bytes_down as f64, floor.down_bytes as f64), 2),
            opt_f(ratio(b.bytes_down as f64, floor.down_bytes as f64), 2),
            None,
        );
        if let Some(saved) = self.saved_bytes {
            row(
                "  bytes down / saved documents",
                opt_f(ratio(t.bytes_down as f64, saved as f64), 2),
                opt_f(ratio(b.bytes_down as f64, saved as f64), 2),
                None,
            );
        }
        for (name, p) in [("latency p50 ms", 50.0), ("latency p95 ms", 95.0), ("latency p99 ms", 99.0)] {
            let (a, c) = (percentile(&t.latencies_ms, p), percentile(&b.latencies_ms, p));
            row(name, format!("{a:.1}"), format!("{c:.2}"), ratio(a, c));
        }
        row(
            "changes/s",
            format!("{:.0}", t.changes_per_s()),
            format!("{:.0}", b.changes_per_s()),
            ratio(t.changes_per_s(), b.changes_per_s()),
        );
        row(
            "activities/s",
            format!("{:.0}", t.activities_per_s()),
            format!("{:.0}", b.activities_per_s()),
            ratio(t.activities_per_s(), b.activities_per_s()),
        );
        let cpu_ratio = match (t.server_cpu_s, b.server_cpu_s) {
            (Some(a), Some(c)) => ratio(a, c),
            _ => None,
        };
        row("server CPU s", opt_f(t.server_cpu_s, 2), opt_f(b.server_cpu_s, 3), cpu_ratio);
        if t.database_cpu_s.is_some() {
            row("PostgreSQL CPU s", opt_f(t.database_cpu_s, 2), "-".into(), None);
        }
        row("devices' CPU s (this process)", opt_f(t.client_cpu_s, 2), "-".into(), None);
        if let Some(per_cpu) = t.activities_per_server_cpu_s() {
            row("activities per server-side CPU s", format!("{per_cpu:.0}"), "-".into(), None);
        }
        row("server peak RSS MiB", mib(t.peak_rss_bytes), "-".into(), None);
        row("database MiB", mib(t.database_bytes), "-".into(), None);
        row("measured phase s", format!("{:.2}", t.wall_s), format!("{:.3}", b.wall_s), None);

        let mut out = format!("== {} · {} ==\n{}\n", self.name, self.backend, self.description);
        out.push_str(&format!(
            "payload floor: up {} B in {} change(s), down {} B in {} change(s){}\n",
            grouped(floor.up_bytes),
            floor.up_changes,
            grouped(floor.down_bytes),
            floor.down_changes,
            self.saved_bytes.map(|s| format!("; saved documents {} B", grouped(s))).unwrap_or_default()
        ));
        let header = ["", "tsunagi", "standard", "tsunagi/standard"];
        let widths: Vec<usize> = (0..4)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
            .collect();
        let line = |cells: [&str; 4]| {
            let mut s = format!("{:<w$}", cells[0], w = widths[0]);
            for i in 1..4 {
                s.push_str(&format!("  {:>w$}", cells[i], w = widths[i]));
            }
            s.push('\n');
            s
        };
        out.push_str(&line(header));
        for r in &rows {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
    }

    #[test]
    fn server_side_capacity_counts_the_database_too() {
        let mut f =
            Figures { activities: 300, server_cpu_s: Some(2.0), database_cpu_s: Some(1.0), ..Figures::default() };
        assert_eq!(f.activities_per_server_cpu_s(), Some(100.0));
        f.database_cpu_s = None;
        assert_eq!(f.activities_per_server_cpu_s(), Some(150.0));
        f.server_cpu_s = None;
        assert_eq!(f.activities_per_server_cpu_s(), None);
    }

    #[test]
    fn groups_digits() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1234567), "1 234 567");
    }
}
