//! The `supervisor` scenario: a supervisor reads the visit log (`GET /v1/visits`) and a
//! fiscal year's monthly figures (`GET /v1/figures/{fy}`) of a municipality holding
//! `--supervisor-cases` cases of `--supervisor-activities-per-case` activities each
//! (20,000 × 50 = 1,000,000 by default).
//!
//! The database is filled by the bulk seeder ([`super::bulk`]); then `tsunagi serve` starts on
//! it as in every scenario, the supervisor signs in over HTTP (`POST /v1/auth/login`) on a
//! registered device, and every measured request is a real HTTP request through the
//! byte-counting proxy, answered by the server from the database; latencies are the proxy's
//! (first byte of the request to last byte of the answer). Every answer is checked: status
//! 200, a full page where one is due, and figures whose totals are those seeded.
//!
//! One untimed warm-up pass (each request kind once) comes first. Then `--supervisor-rounds`
//! rounds, each reading, for every filter set below, the first page of 50 and following the
//! keyset `next` for `--supervisor-pages` pages in all, and the fiscal year's figures once:
//!
//! - as a supervisor **without an area** (every case of the municipality): no filter; an
//!   area; a counsellor; a month (`from`/`to`); an area and a month; a counsellor and a
//!   month; unreviewed visits (`kind=visit&reviewed=false`);
//! - as a supervisor **of one area** (the cases of the area, the consented cases, and their
//!   own): no filter; a month.
//!
//! The area, counsellor and month change from round to round.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{Duration as Days, NaiveDate};
use serde_json::{json, Value};
use tsunagi_sync::client::SyncClient;
use tsunagi_sync::document::format_date;

use super::bulk::{self, Seeded, Staffing, AREAS};
use super::device::Person;
use super::report::{ms, percentile, Figures};
use super::scenarios::{Context, Harness};
use super::server::BenchDatabase;

/// The target of issue #7 for a visit-log page, p95 in milliseconds.
pub const VISIT_PAGE_TARGET_MS: f64 = 50.0;

/// The target of issue #7 for a fiscal year's figures, in milliseconds.
pub const FIGURES_TARGET_MS: f64 = 500.0;

/// Rows per visit-log page (the API's default).
const PAGE_ROWS: usize = 50;

/// A minimal HTTP/1.1 client on one kept-alive connection: `GET` with a bearer token, bodies
/// by `content-length` or chunked. The measured requests need nothing more, and the binary
/// carries no HTTP client of its own besides the sync client's. Both supervisors' requests
/// go one after another on the same connection, so the proxy sees them in the order made.
struct Http {
    port: u16,
    reader: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(port: u16) -> Self {
        Http { port, reader: None }
    }

    fn connection(&mut self) -> anyhow::Result<&mut BufReader<TcpStream>> {
        if self.reader.is_none() {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).context("cannot connect to the proxy")?;
            stream.set_nodelay(true).context("TCP_NODELAY")?;
            stream.set_read_timeout(Some(Duration::from_secs(300))).context("a read timeout")?;
            self.reader = Some(BufReader::new(stream));
        }
        self.reader.as_mut().context("no connection")
    }

    /// `GET path` with `token`: the status and the body.
    fn get(&mut self, path: &str, token: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n",
            self.port
        );
        let answer = (|| {
            let reader = self.connection()?;
            reader.get_mut().write_all(request.as_bytes()).context("cannot send a request")?;
            read_response(reader)
        })();
        match answer {
            Ok((status, body, close)) => {
                if close {
                    self.reader = None;
                }
                Ok((status, body))
            }
            Err(e) => {
                self.reader = None;
                Err(e)
            }
        }
    }
}

/// Reads one HTTP/1.1 response: status, body, and whether the server closes the connection.
fn read_response(reader: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line).context("no status line")?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("a bad status line")?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if reader.read_line(&mut line).context("cannot read a header")? == 0 {
            bail!("the connection closed inside the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
            match name.as_str() {
                "content-length" => length = Some(value.parse::<usize>().context("a bad content-length")?),
                "transfer-encoding" => chunked = value.contains("chunked"),
                "connection" => close = value.contains("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).context("no chunk size")?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).context("a bad chunk size")?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).context("a short chunk")?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).context("a short body")?;
    } else {
        reader.read_to_end(&mut body).context("cannot read the body")?;
        close = true;
    }
    Ok((status, body, close))
}

/// What a group of requests measured.
#[derive(Debug, Clone, Default)]
struct Group {
    label: String,
    /// `visits` or `figures`.
    kind: &'static str,
    latencies_ms: Vec<f64>,
    first_page_ms: Vec<f64>,
    bytes_down: u64,
    rows: u64,
}

impl Group {
    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "kind": self.kind,
            "requests": self.latencies_ms.len(),
            "rows": self.rows,
            "bytes_down": self.bytes_down,
            "latency_ms": latency_json(&self.latencies_ms),
            "first_page_latency_ms": latency_json(&self.first_page_ms),
        })
    }
}

fn latency_json(values: &[f64]) -> Value {
    json!({
        "count": values.len(),
        "p50": percentile(values, 50.0),
        "p95": percentile(values, 95.0),
        "p99": percentile(values, 99.0),
        "max": percentile(values, 100.0),
    })
}

/// The result of the `supervisor` scenario.
#[derive(Debug, Clone)]
pub struct SupervisorReport {
    /// `supervisor`.
    pub name: &'static str,
    description: String,
    backend: &'static str,
    params: Value,
    seeded: Seeded,
    seeding_s: f64,
    groups: Vec<Group>,
    tsunagi: Figures,
}

/// One request the scenario makes, for whom, in which group.
struct Planned {
    group: usize,
    who: usize,
    query: String,
}

/// The first and last day of month `index` (0 = April) of the fiscal year starting in April of `year`.
fn month_range(year: i32, index: usize) -> (NaiveDate, NaiveDate) {
    let m = index % 12 + 3;
    let (y, month) = (year + i32::from(m >= 12), (m % 12 + 1) as u32);
    let first = NaiveDate::from_ymd_opt(y, month, 1).unwrap_or_default();
    let next =
        if month == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, month + 1, 1) };
    (first, next.map(|n| n - Days::days(1)).unwrap_or(first))
}

/// Signs `person` in over HTTP and returns an access token.
fn sign_in(ctx: &Context<'_>, url: &str, person: &Person) -> anyhow::Result<String> {
    let client = SyncClient::builder(url).build().context("cannot build the HTTP client")?;
    let tokens = ctx
        .runtime
        .block_on(client.login(&person.login, &person.password, person.device))
        .with_context(|| format!("{} cannot sign in", person.login))?;
    Ok(tokens.access_token)
}

/// Checks a visit-log page (a page followed by another is full; the first page without a
/// filter is not empty) and returns its `next` and its number of rows.
fn check_page(body: &[u8], must_have_rows: bool) -> anyhow::Result<(Option<String>, usize)> {
    let page: Value = serde_json::from_slice(body).context("a visit-log page that is not JSON")?;
    let rows = page["visits"].as_array().context("a visit-log page without visits")?.len();
    let next = page["next"].as_str().map(str::to_owned);
    if next.is_some() && rows != PAGE_ROWS {
        bail!("a visit-log page of {rows} rows with more to follow");
    }
    if must_have_rows && rows == 0 {
        bail!("an empty visit log");
    }
    Ok((next, rows))
}

/// Checks the figures against what was seeded.
fn check_figures(body: &[u8], seeded: &Seeded) -> anyhow::Result<()> {
    let figures: Value = serde_json::from_slice(body).context("figures that are not JSON")?;
    let total = |section: &str, row: &str| figures[section][row]["total"].as_u64().unwrap_or(u64::MAX);
    let checks = [
        ("consultations", total("consultations", "consultations"), seeded.consultations),
        ("visits", total("outreach", "visits"), seeded.visits),
        ("contact attempts", total("outreach", "contact_attempts"), seeded.contact_attempts),
    ];
    for (what, got, seeded) in checks {
        if got != seeded {
            bail!("the figures count {got} {what} where {seeded} were seeded");
        }
    }
    let referrals = figures["referrals"]["total"]["total"].as_u64().unwrap_or(u64::MAX);
    if referrals > seeded.referrals {
        bail!("the figures count {referrals} referrals where at most {} were seeded", seeded.referrals);
    }
    Ok(())
}

/// `supervisor`: the visit log and the monthly figures over a million activities.
pub fn run(ctx: &Context<'_>) -> anyhow::Result<SupervisorReport> {
    let p = ctx.params;
    let name = "supervisor";
    let seeding = Instant::now();
    let mut db = BenchDatabase::create(ctx.backend, ctx.dir, name)?;
    if p.keep_database {
        db.keep();
    }
    let (staffing, seeded): (Staffing, Seeded) =
        bulk::seed(&db.url, p.supervisor_cases, p.supervisor_activities, p.narrative_chars, p.seed)?;
    let seeding_s = seeding.elapsed().as_secs_f64();
    eprintln!("supervisor: seeded {} cases, {} activities in {seeding_s:.0} s", seeded.cases, seeded.activities);

    let mut harness = Harness::start(db, ctx.dir, name)?;
    let url = harness.url();
    let people = [&staffing.supervisor, &staffing.area_supervisor];
    let mut tokens = Vec::new();
    for person in people {
        tokens.push(sign_in(ctx, &url, person)?);
    }
    let mut http = Http::new(harness.proxy.port());

    let year = seeded.fiscal_year;
    let labels: [(&str, usize); 9] = [
        ("no filter", 0),
        ("area", 0),
        ("counsellor", 0),
        ("month", 0),
        ("area + month", 0),
        ("counsellor + month", 0),
        ("unreviewed visits", 0),
        ("area supervisor: no filter", 1),
        ("area supervisor: month", 1),
    ];
    let mut groups: Vec<Group> =
        labels.iter().map(|(l, _)| Group { label: (*l).to_owned(), kind: "visits", ..Group::default() }).collect();
    let figures_group = groups.len();
    groups.push(Group { label: format!("figures {year}"), kind: "figures", ..Group::default() });

    let plan = |round: usize| -> Vec<Planned> {
        let area = AREAS[round % AREAS.len()].0;
        let counsellor = &staffing.counsellors[(round * 7) % staffing.counsellors.len()].0;
        let (from, to) = month_range(year, round * 5 + 2);
        let month = format!("from={}&to={}", format_date(from), format_date(to));
        let queries = [
            String::new(),
            format!("area={area}"),
            format!("counsellor={}", counsellor.staff),
            month.clone(),
            format!("area={area}&{month}"),
            format!("counsellor={}&{month}", counsellor.staff),
            "kind=visit&reviewed=false".to_owned(),
            String::new(),
            month,
        ];
        labels
            .iter()
            .zip(queries)
            .enumerate()
            .map(|(group, ((_, who), query))| Planned { group, who: *who, query })
            .collect()
    };

    // Reads a plan: every visit-log query with its following pages, then the figures; returns
    // (group, is first page) of each request in order.
    let pages = p.supervisor_pages.max(1);
    let read = |plan: &[Planned], http: &mut Http, groups: &mut [Group]| -> anyhow::Result<Vec<(usize, bool)>> {
        let mut order = Vec::new();
        for planned in plan {
            let mut after: Option<String> = None;
            for page in 0..pages {
                let mut query = planned.query.clone();
                if let Some(next) = &after {
                    query = if query.is_empty() { format!("after={next}") } else { format!("{query}&after={next}") };
                }
                let path = if query.is_empty() { "/v1/visits".to_owned() } else { format!("/v1/visits?{query}") };
                let (status, body) = http.get(&path, &tokens[planned.who])?;
                if status != 200 {
                    bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
                }
                let (next, rows) =
                    check_page(&body, page == 0 && planned.query.is_empty()).with_context(|| format!("GET {path}"))?;
                groups[planned.group].rows += rows as u64;
                order.push((planned.group, page == 0));
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        let path = format!("/v1/figures/{year}");
        let (status, body) = http.get(&path, &tokens[0])?;
        if status != 200 {
            bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
        }
        check_figures(&body, &seeded)?;
        order.push((figures_group, true));
        Ok(order)
    };

    // Warm-up: one untimed pass.
    let mut scratch = groups.clone();
    read(&plan(p.supervisor_rounds), &mut http, &mut scratch)?;

    let mark = harness.begin()?;
    let mut order = Vec::new();
    for round in 0..p.supervisor_rounds {
        order.extend(read(&plan(round), &mut http, &mut groups)?);
    }
    let exchanges = harness.proxy.take();
    let mut tsunagi = harness.end(mark)?;
    tsunagi.round_trips = exchanges.len() as u64;
    tsunagi.http_errors = exchanges.iter().filter(|e| e.status.is_none_or(|s| s >= 400)).count() as u64;
    drop(harness);

    if exchanges.len() != order.len() {
        bail!("the proxy saw {} requests where {} were made", exchanges.len(), order.len());
    }
    for (exchange, (group, first)) in exchanges.iter().zip(order) {
        let expected = if group == figures_group { "/v1/figures/" } else { "/v1/visits" };
        if !exchange.path.starts_with(expected) || exchange.status != Some(200) {
            bail!("the proxy saw {} ({:?}) where {expected} was due", exchange.path, exchange.status);
        }
        let g = &mut groups[group];
        g.latencies_ms.push(ms(exchange.latency));
        g.bytes_down += exchange.down;
        if first {
            g.first_page_ms.push(ms(exchange.latency));
        }
    }

    Ok(SupervisorReport {
        name,
        description: format!(
            "a supervisor reads the visit log ({} filter sets × {pages} pages of {PAGE_ROWS}, keyset paging) and fiscal {year}'s \
             monthly figures, {} round(s); {} cases, {} activities stored",
            labels.len(),
            p.supervisor_rounds,
            seeded.cases,
            seeded.activities
        ),
        backend: ctx.backend.label(),
        params: json!({
            "cases": p.supervisor_cases,
            "activities_per_case": p.supervisor_activities,
            "rounds": p.supervisor_rounds,
            "pages": pages,
            "narrative_chars": p.narrative_chars,
        }),
        seeded,
        seeding_s,
        groups,
        tsunagi,
    })
}

fn fmt_ms(v: f64) -> String {
    format!("{v:.1}")
}

impl SupervisorReport {
    fn visit_latencies(&self) -> Vec<f64> {
        self.groups.iter().filter(|g| g.kind == "visits").flat_map(|g| g.latencies_ms.iter().copied()).collect()
    }

    fn figure_latencies(&self) -> Vec<f64> {
        self.groups.iter().filter(|g| g.kind == "figures").flat_map(|g| g.latencies_ms.iter().copied()).collect()
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let (visits, figures) = (self.visit_latencies(), self.figure_latencies());
        let s = &self.seeded;
        let t = &self.tsunagi;
        json!({
            "name": self.name,
            "description": self.description,
            "backend": self.backend,
            "params": self.params,
            "seeding_s": self.seeding_s,
            "seeded": {
                "fiscal_year": s.fiscal_year,
                "cases": s.cases,
                "activities": s.activities,
                "consultations": s.consultations,
                "visits": s.visits,
                "contact_attempts": s.contact_attempts,
                "referrals": s.referrals,
                "reviews": s.reviews,
                "document_changes": s.changes,
            },
            "visit_log": latency_json(&visits),
            "figures": latency_json(&figures),
            "groups": self.groups.iter().map(Group::to_json).collect::<Vec<_>>(),
            "targets": {
                "visit_page_p95_ms": VISIT_PAGE_TARGET_MS,
                "visit_page_p95_met": !visits.is_empty() && percentile(&visits, 95.0) <= VISIT_PAGE_TARGET_MS,
                "figures_ms": FIGURES_TARGET_MS,
                "figures_met": !figures.is_empty() && percentile(&figures, 100.0) <= FIGURES_TARGET_MS,
            },
            "tsunagi": {
                "requests": t.round_trips,
                "http_errors": t.http_errors,
                "wall_s": t.wall_s,
                "server_cpu_s": t.server_cpu_s,
                "database_cpu_s": t.database_cpu_s,
                "client_cpu_s": t.client_cpu_s,
                "peak_rss_bytes": t.peak_rss_bytes,
                "database_bytes": t.database_bytes,
            },
        })
    }

    /// The table printed for the scenario.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 6]> = Vec::new();
        for g in &self.groups {
            let avg = if g.latencies_ms.is_empty() { 0 } else { g.bytes_down / g.latencies_ms.len() as u64 };
            rows.push([
                g.label.clone(),
                g.latencies_ms.len().to_string(),
                fmt_ms(percentile(&g.latencies_ms, 50.0)),
                fmt_ms(percentile(&g.latencies_ms, 95.0)),
                fmt_ms(percentile(&g.latencies_ms, 100.0)),
                avg.to_string(),
            ]);
        }
        let (visits, figures) = (self.visit_latencies(), self.figure_latencies());
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        let mut out = format!("== {} · {} ==\n{}\n", self.name, self.backend, self.description);
        let header = ["requests", "n", "p50 ms", "p95 ms", "max ms", "B down avg"];
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
            .collect();
        let line = |cells: [&str; 6]| {
            let mut s = format!("{:<w$}", cells[0], w = widths[0]);
            for i in 1..6 {
                s.push_str(&format!("  {:>w$}", cells[i], w = widths[i]));
            }
            s.push('\n');
            s
        };
        out.push_str(&line(header));
        for r in &rows {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
        }
        let vp95 = percentile(&visits, 95.0);
        let fmax = percentile(&figures, 100.0);
        out.push_str(&format!(
            "visit-log page p95 {:.1} ms over {} requests (target ≤ {VISIT_PAGE_TARGET_MS} ms: {})\n",
            vp95,
            visits.len(),
            verdict(vp95 <= VISIT_PAGE_TARGET_MS)
        ));
        out.push_str(&format!(
            "figures p50 {:.1} ms, max {:.1} ms over {} requests (target ≤ {FIGURES_TARGET_MS} ms: {})\n",
            percentile(&figures, 50.0),
            fmax,
            figures.len(),
            verdict(fmax <= FIGURES_TARGET_MS)
        ));
        let t = &self.tsunagi;
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        let mib = |v: Option<u64>| v.map(|v| format!("{:.0}", v as f64 / 1048576.0)).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "server CPU {} s, PostgreSQL CPU {} s, this process {} s; server peak RSS {} MiB; database {} MiB; \
             measured phase {:.1} s; seeding {:.0} s\n",
            opt(t.server_cpu_s),
            opt(t.database_cpu_s),
            opt(t.client_cpu_s),
            mib(t.peak_rss_bytes),
            mib(t.database_bytes),
            t.wall_s,
            self.seeding_s
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;

    use super::*;

    #[test]
    fn months_of_a_fiscal_year_run_april_to_march() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(month_range(2025, 0), (d(2025, 4, 1), d(2025, 4, 30)));
        assert_eq!(month_range(2025, 8), (d(2025, 12, 1), d(2025, 12, 31)));
        assert_eq!(month_range(2025, 10), (d(2026, 2, 1), d(2026, 2, 28)));
        assert_eq!(month_range(2025, 11), (d(2026, 3, 1), d(2026, 3, 31)));
        assert_eq!(month_range(2025, 12).0.month(), 4);
    }
}
