//! `tsunagi bench --scenario all --scale 0.05`: the benchmark harness, tiny, on SQLite, through
//! the real binary (which starts `tsunagi serve` as its own child process). Checks that the
//! JSON holds every scenario with plausible figures on both sides; it asserts no targets
//! (those live in `docs/benchmarks.md`, never in timed tests).

mod common;

use serde_json::Value;

const SCENARIOS: [&str; 5] = ["reconnect", "field-day", "concurrent", "first-sync", "load"];

fn number(value: &Value, path: &str) -> f64 {
    let mut v = value;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_f64().unwrap_or_else(|| panic!("{path} is not a number: {v}"))
}

#[test]
fn the_benchmark_runs_every_scenario_and_writes_plausible_json() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("bench.json");
    let json_arg = json.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) =
        common::run_tsunagi(&["bench", "--scenario", "all", "--scale", "0.05", "--json", json_arg], &[], "");
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for scenario in SCENARIOS {
        assert!(stdout.contains(&format!("== {scenario} · SQLite ==")), "no table for {scenario}:\n{stdout}");
    }

    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    let results: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(results["backend"], "SQLite");
    assert!(number(&results, "machine.cpus") >= 1.0);
    for name in SCENARIOS {
        let scenario = &results["scenarios"][name];
        assert!(scenario.is_object(), "no {name} in {text}");
        for side in ["tsunagi", "baseline"] {
            let figures = &scenario[side];
            let at = |key: &str| number(figures, key);
            assert!(at("syncs") >= 1.0, "{name}/{side}: {figures}");
            assert!(at("round_trips") >= 1.0, "{name}/{side}: {figures}");
            assert!(at("bytes_up") > 0.0 && at("bytes_down") > 0.0, "{name}/{side}: {figures}");
            assert!(at("latency_ms.p50") > 0.0, "{name}/{side}: {figures}");
            assert!(at("latency_ms.p99") >= at("latency_ms.p50"), "{name}/{side}: {figures}");
            assert!(at("wall_s") > 0.0, "{name}/{side}: {figures}");
            assert!(at("server_cpu_s") >= 0.0, "{name}/{side}: {figures}");
        }
        let tsunagi = &scenario["tsunagi"];
        // Every sync of tsunagi's is one HTTP request at this size (under `load`, a sync that
        // failed on an overloaded machine is retried with the next batch).
        if name == "load" {
            assert!(number(tsunagi, "round_trips") >= number(tsunagi, "syncs"), "{name}: {tsunagi}");
        } else {
            assert_eq!(number(tsunagi, "round_trips"), number(tsunagi, "syncs"), "{name}: {tsunagi}");
        }
        assert!(number(tsunagi, "peak_rss_bytes") > 1_000_000.0, "{name}: {tsunagi}");
        assert!(number(tsunagi, "database_bytes") > 0.0, "{name}: {tsunagi}");
        assert!(number(&scenario["ratios"], "bytes_total") > 0.0, "{name}: {scenario}");
    }

    // Work that moves changes moved them, on both sides, and the floor says how much.
    for name in ["field-day", "concurrent", "load"] {
        let scenario = &results["scenarios"][name];
        assert!(number(scenario, "payload_floor.up_bytes") > 0.0, "{name}: {scenario}");
        assert!(number(scenario, "tsunagi.bytes_up") > number(scenario, "payload_floor.up_bytes"), "{name}");
        assert!(number(scenario, "tsunagi.activities") >= 1.0, "{name}: {scenario}");
        assert!(number(scenario, "tsunagi.activities_per_s") > 0.0, "{name}: {scenario}");
    }
    let first = &results["scenarios"]["first-sync"];
    assert!(number(first, "payload_floor.down_bytes") > 0.0, "{first}");
    assert!(number(first, "saved_bytes") > 0.0, "{first}");
    assert!(number(first, "tsunagi.bytes_down") > number(first, "saved_bytes"), "{first}");
    let reconnect = &results["scenarios"]["reconnect"];
    assert_eq!(number(reconnect, "payload_floor.up_bytes"), 0.0, "{reconnect}");
    assert_eq!(number(reconnect, "payload_floor.down_bytes"), 0.0, "{reconnect}");
}

#[test]
fn the_supervisor_scenario_reads_the_visit_log_and_the_figures_over_http() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("supervisor.json");
    let json_arg = json.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) =
        common::run_tsunagi(&["bench", "--scenario", "supervisor", "--scale", "0.01", "--json", json_arg], &[], "");
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("== supervisor · SQLite =="), "{stdout}");

    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    let results: Value = serde_json::from_str(&text).expect("valid JSON");
    let scenario = &results["scenarios"]["supervisor"];
    // 20,000 × 50 at 1 %: 200 cases of one activity each.
    assert_eq!(number(scenario, "seeded.cases"), 200.0, "{scenario}");
    assert_eq!(number(scenario, "seeded.activities"), 200.0, "{scenario}");
    assert!(number(scenario, "visit_log.count") >= 9.0, "{scenario}");
    assert!(number(scenario, "visit_log.p95") > 0.0, "{scenario}");
    assert!(number(scenario, "figures.count") >= 1.0, "{scenario}");
    assert_eq!(number(scenario, "tsunagi.http_errors"), 0.0, "{scenario}");
    assert!(number(scenario, "tsunagi.requests") >= 10.0, "{scenario}");
    let groups = scenario["groups"].as_array().expect("groups");
    assert!(groups.iter().all(|g| number(g, "requests") >= 1.0), "{scenario}");
    assert!(number(&groups[0], "rows") >= 50.0, "the first page without a filter is full: {scenario}");
}
