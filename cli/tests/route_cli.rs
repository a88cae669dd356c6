//! End-to-end checks of `sona route` and `sona select-model` (the shipped model).

use std::io::Write;
use std::process::{Command, Stdio};

fn sona() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sona"))
}

fn run_stdin(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = sona()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn routes_stdin_lines_and_reports_bad_lines_without_stopping() {
    let input = b"movies like The Matrix\n\xff\xfe broken\n\nwhere can I stream Fargo\r\n";
    let (code, out, err) = run_stdin(&["route"], input);
    assert_eq!(code, 2, "stderr: {err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["query"], "movies like The Matrix");
    assert_eq!(lines[0]["route"], "gnn_similarity");
    let scores = lines[0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 6);
    let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4);
    assert!(lines[0]["fell_back"].is_boolean());
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("UTF-8"));
    assert!(lines[2]["error"].as_str().unwrap().contains("empty"));
    assert_eq!(lines[3]["route"], "availability_check");
    assert!(err.contains("2 of 4 lines"));
}

#[test]
fn single_text_and_errors() {
    let out = sona()
        .args(["route", "--text", "what's new this week"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["route"], "catalog_freshness");

    let out = sona().args(["route", "--text", "  "]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty query"));

    let dir = std::env::temp_dir().join(format!("sona-route-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.bin");
    let good = include_bytes!("../../models/router.bin");
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let out = sona()
        .args(["route", "--text", "hi", "--model", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
}

#[test]
fn select_model_prints_json_and_rejects_bad_input() {
    let out = sona()
        .args([
            "select-model",
            "--route",
            "availability_check",
            "--complexity",
            "0.6",
            "--budget",
            "10",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model_id"], "claude-sonnet");
    assert!((v["estimated_cost"].as_f64().unwrap() - 5.76).abs() < 1e-9);
    assert_eq!(v["estimated_latency_ms"], 500.0);
    for args in [
        ["--route", "nope", "--complexity", "0.5", "--budget", "1"],
        [
            "--route",
            "mood_matching",
            "--complexity",
            "NaN",
            "--budget",
            "1",
        ],
        [
            "--route",
            "mood_matching",
            "--complexity",
            "0.5",
            "--budget",
            "-1",
        ],
        [
            "--route",
            "mood_matching",
            "--complexity",
            "0.5",
            "--budget",
            "0",
        ],
    ] {
        let out = sona().arg("select-model").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn train_router_end_to_end_on_a_tiny_catalog() {
    let dir = std::env::temp_dir().join(format!("sona-train-test-{}", std::process::id()));
    let data = dir.join("ml");
    std::fs::create_dir_all(&data).unwrap();
    let titles = [
        "Toy Story (1995)",
        "GoldenEye (1995)",
        "Heat (1995)",
        "Fargo (1996)",
        "Casablanca (1942)",
        "Alien (1979)",
        "Babe (1995)",
        "Clerks (1994)",
        "Twister (1996)",
        "Jumanji (1995)",
        "Braveheart (1995)",
        "Sabrina (1995)",
    ];
    let mut item = String::new();
    let mut udata = String::new();
    for (i, t) in titles.iter().enumerate() {
        let flags: Vec<&str> = (0..19)
            .map(|g| if g == 1 + i % 18 { "1" } else { "0" })
            .collect();
        item.push_str(&format!(
            "{}|{t}|01-Jan-1995||http://x|{}\n",
            i + 1,
            flags.join("|")
        ));
        udata.push_str(&format!("1\t{}\t4\t88125{i:04}\n", i + 1));
    }
    std::fs::write(data.join("u.item"), item).unwrap();
    std::fs::write(data.join("u.data"), udata).unwrap();
    let hand = dir.join("hand.tsv");
    std::fs::write(
        &hand,
        "movies like heat\tgnn_similarity\nwhere can i stream fargo\tavailability_check\n",
    )
    .unwrap();
    let out_model = dir.join("r.bin");
    let out = sona()
        .args([
            "train-router",
            "--data",
            data.to_str().unwrap(),
            "--per-route",
            "60",
            "--epochs",
            "2",
            "--buckets",
            "256",
            "--out",
            out_model.to_str().unwrap(),
            "--handwritten",
            hand.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for split in ["train:", "val:", "test:", "handwritten:", "int8"] {
        assert!(stdout.contains(split), "{stdout}");
    }
    let out = sona()
        .args([
            "route",
            "--model",
            out_model.to_str().unwrap(),
            "--text",
            "movies like heat",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["route"].is_string());
    // Missing data directory: a clear error, not a panic.
    let out = sona()
        .args(["train-router", "--data", dir.join("nope").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
