//! Guards that `pydb-bench` runs end to end and writes the JSON report the README documents: schema fields present, every result measured something (key-value runs, and `--sql` with a process per store).

use std::process::Command;

use serde_json::Value;

#[test]
fn tiny_run_writes_a_complete_report() {
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("out.json");
    let svg = work.path().join("out.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_pydb-bench"))
        .args([
            "--stores",
            "pydb-log-btree,pydb-memory,sqlite",
            "--workloads",
            "fillrandom,readrandom,readseq,fillsync,reopen",
            "--num",
            "500",
            "--sync-ops",
            "10",
            "--reopen-rounds",
            "1",
            "--cache-mb",
            "8",
        ])
        .arg("--dir")
        .arg(work.path().join("data"))
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("== readrandom =="), "{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let machine = &report["machine"];
    for field in [
        "cpu_model",
        "cores",
        "memory_bytes",
        "kernel",
        "filesystem",
        "date_utc",
    ] {
        assert!(
            machine.get(field).is_some(),
            "machine.{field} missing: {machine}"
        );
    }
    let results = report["results"].as_array().unwrap();
    // 3 stores x 7 variants, less pydb-memory's 3 (fillsync x2, reopen).
    assert_eq!(results.len(), 18, "{results:#?}");
    for r in results {
        for field in [
            "store",
            "workload",
            "threads",
            "ops_per_sec",
            "p50_us",
            "p99_us",
            "p999_us",
            "disk_bytes",
            "write_amp",
            "peak_rss_bytes",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        let ops = r["ops_per_sec"].as_f64().unwrap();
        assert!(ops > 0.0, "no throughput in {r}");
        assert!(r["p50_us"].as_f64().unwrap() > 0.0, "no latency in {r}");
        if r["store"] != "pydb-memory" {
            assert!(
                r["disk_bytes"].as_u64().unwrap() > 0,
                "nothing on disk in {r}"
            );
        }
    }
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 3, "{skipped:#?}");
    assert!(report["failed"].as_array().unwrap().is_empty());

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(svg.contains("readrandom"));
}

#[test]
fn sql_with_a_process_per_store_and_two_rounds_reports_every_store() {
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("sql.json");
    let out = Command::new(env!("CARGO_BIN_EXE_pydb-bench"))
        .args(["--sql", "--quick", "--isolate", "--repeat", "2"])
        .args([
            "-n",
            "1000",
            "--sql-ops",
            "50",
            "--workloads",
            "point,groupby,q6",
        ])
        .arg("--dir")
        .arg(work.path().join("data"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 round(s), a process per store"),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    // 4 stores x 2 rounds x (insert, point, groupby, tpchload, q6).
    assert_eq!(results.len(), 40, "{results:#?}");
    for store in ["pydb-memory", "sqlite-memory", "pydb-btree", "sqlite"] {
        for round in 0..2 {
            let n = results
                .iter()
                .filter(|r| r["store"] == store && r["round"] == round)
                .count();
            assert_eq!(n, 5, "{store} round {round}: {results:#?}");
        }
    }
    assert!(
        results
            .iter()
            .all(|r| r["ops_per_sec"].as_f64().unwrap() > 0.0)
    );
    // Each child's directory is gone with it.
    let left: Vec<_> = std::fs::read_dir(work.path().join("data"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
