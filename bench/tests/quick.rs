//! `docfan-bench --quick` runs every scenario with tiny sizes and writes a complete
//! report: every scenario and floor in the JSON, every ratio to a floor, valid charts.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use docfan_bench::report::{Kind, Report};

const SCENARIOS: [&str; 14] = [
    "floor-sqlite",
    "writes",
    "fanout",
    "floor-broadcast",
    "delivery",
    "notifications",
    "edits",
    "floor-sustained-broadcast",
    "sustained",
    "floor-held-connections",
    "connections",
    "floor-cpu",
    "cpu",
    "soak",
];

const CHARTS: [&str; 3] = ["writes.png", "delivery.png", "fanout.png"];

#[test]
fn the_quick_run_writes_a_complete_report() {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_docfan-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("docfan-bench starts");
    assert!(
        run.status.success(),
        "docfan-bench --quick failed ({}):\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("quick run: {:.1} s", started.elapsed().as_secs_f64());

    let json = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let report: Report = serde_json::from_str(&json).expect("report.json parses");
    assert!(report.run.quick);
    assert!(report.machine.cores > 0);
    assert!(!report.machine.cpu.is_empty() && !report.machine.kernel.is_empty());
    assert!(!report.machine.date.is_empty() && !report.machine.git_commit.is_empty());

    let names: Vec<&str> = report.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, SCENARIOS);
    for s in &report.scenarios {
        assert!(!s.cases.is_empty(), "{} has no cases", s.name);
        for case in &s.cases {
            assert!(
                case.throughput.as_ref().is_some_and(|t| t.value > 0.0),
                "{} / {}: no throughput",
                s.name,
                case.label
            );
        }
        let Some(floor) = &s.floor else {
            continue;
        };
        assert_eq!(s.kind, Kind::Docfan);
        assert_eq!(report.scenario(floor).map(|f| f.kind), Some(Kind::Floor));
        for case in &s.cases {
            let ratios = case
                .ratio_to_floor
                .as_ref()
                .unwrap_or_else(|| panic!("{} / {}: no ratio to the floor", s.name, case.label));
            let wanted: &[&str] = match s.name.as_str() {
                "connections" => &["throughput", "bytes_per_connection"],
                // A quick run's CPU time may be under one clock tick: the figure is
                // checked below, its ratio only in full runs.
                "cpu" => &["throughput"],
                "delivery" | "notifications" => &[
                    "throughput",
                    "latency_p50",
                    "latency_p90",
                    "latency_p99",
                    "latency_max",
                    "last_subscriber_latency_p99",
                ],
                _ => &["throughput", "latency_p50", "latency_p99"],
            };
            for key in wanted {
                assert!(
                    ratios.get(*key).is_some_and(|r| r.is_finite() && *r != 0.0),
                    "{} / {}: no {key} ratio in {ratios:?}",
                    s.name,
                    case.label
                );
            }
        }
    }

    for name in ["cpu", "floor-cpu"] {
        for case in &report.scenario(name).unwrap().cases {
            let spent = case.figures["server_cpu_ms_per_edit"];
            assert!(spent.is_finite() && spent >= 0.0, "{name}: {spent}");
        }
    }

    // Nothing is missed, and the counts are exact.
    for name in ["sustained", "floor-sustained-broadcast", "soak"] {
        let case = &report.scenario(name).unwrap().cases[0];
        assert_eq!(case.figures["frames_missed"], 0.0, "{name}");
        assert_eq!(case.figures["frames_out_of_order_or_twice"], 0.0, "{name}");
        assert_eq!(
            case.figures["frames_received"], case.figures["frames_expected"],
            "{name}"
        );
    }
    for name in ["connections", "floor-held-connections"] {
        let case = &report.scenario(name).unwrap().cases[0];
        assert_eq!(
            Some(case.figures["delivered_to"]),
            case.number("connections"),
            "{name}"
        );
    }

    for chart in CHARTS {
        assert_png(&out.path().join(chart));
    }
    let summary = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for chart in CHARTS {
        assert!(
            summary.contains(&format!("({chart})")),
            "report.md shows {chart}"
        );
    }
    assert!(summary.contains("| benchmark | docfan | floor | docfan ÷ floor |"));
}

/// A PNG that decodes whole, with a picture in it.
fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        path.display()
    );
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("the PNG header reads");
    let mut pixels = vec![
        0;
        reader
            .output_buffer_size()
            .expect("a size that fits in memory")
    ];
    let info = reader.next_frame(&mut pixels).expect("the PNG decodes");
    assert!(info.width > 0 && info.height > 0);
    assert!(
        pixels.iter().any(|&p| p != 255),
        "{} is not blank",
        path.display()
    );
}
