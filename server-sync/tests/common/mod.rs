//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use sona_sync::http::sync::SyncConfig;

pub const SECRET: &str = "integration-secret";
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}_{}_{}_", std::process::id(), nanos % 1_000_000_000)
}

pub fn small() -> SyncConfig {
    SyncConfig {
        d: 16,
        rank: 4,
        alpha: 8.0,
        global_version: 0,
        max_staleness: 4,
    }
}

/// Start the built binary; returns the child and its address (from its first stdout line).
pub fn spawn_server(store_url: &str, prefix: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sona-sync"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store-url",
            store_url,
            "--table-prefix",
            prefix,
        ])
        .args([
            "--token-secret",
            SECRET,
            "--dim",
            "16",
            "--rank",
            "4",
            "--alpha",
            "8",
            "--round-interval-secs",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sona-sync");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}
