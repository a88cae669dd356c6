//! Scale measurement of the ReasoningBank: build a bank of N synthetic 384-d
//! patterns, then report build rate, search latency (p50/p99 of
//! `find_similar_patterns`, limit 10), recall@10 of the index against exact
//! search, exact-scan latency, and heap bytes per pattern.
//!
//! ```sh
//! cargo run --release -p sona-core --example bank_scale -- 1000000
//! cargo run --release -p sona-core --example bank_scale -- 100000 --uniform
//! ```
//! Options: `--uniform` (random on the sphere instead of 1,000 Gaussian
//! clusters in 50 topics), `--m M`, `--ef-construction E`, `--ef-search E` (comma list to
//! sweep), `--queries Q` (default 200), `--dim D` (default 384),
//! `--keep-pruned` / `--no-keep-pruned` (fill links with pruned candidates or
//! not), `--ef-upper B` (beam of the upper-layer descent, default 8),
//! `--clusters C` (number of Gaussian clusters, default 1,000), `--save FILE` (write the built
//! bank), `--load FILE` (measure a saved bank of the same N and data instead of
//! building one, e.g. to sweep `--ef-search` without a rebuild).

#[path = "common/bank_data.rs"]
mod bank_data;

use bank_data::{Data, Generator};
use sona_core::bank::{BankConfig, PatternContext, ReasoningBank};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut n = 100_000usize;
    let mut data = Data::Clustered {
        clusters: 1000,
        spread: 1.0,
    };
    let mut cfg = BankConfig::default();
    let mut queries = 200usize;
    let mut ef_list: Vec<usize> = vec![cfg.hnsw.ef_search];
    let mut save: Option<String> = None;
    let mut load: Option<String> = None;
    let mut i = 0;
    let val = |i: usize| -> &str {
        args.get(i + 1)
            .map(String::as_str)
            .expect("option needs a value")
    };
    while i < args.len() {
        match args[i].as_str() {
            "--uniform" => data = Data::Uniform,
            "--no-keep-pruned" => cfg.hnsw.keep_pruned = false,
            "--keep-pruned" => cfg.hnsw.keep_pruned = true,
            "--ef-upper" => {
                cfg.hnsw.ef_upper = val(i).parse().expect("--ef-upper");
                i += 1
            }
            "--clusters" => {
                let c: usize = val(i).parse().expect("--clusters");
                data = Data::Clustered {
                    clusters: c,
                    spread: 1.0,
                };
                i += 1
            }
            "--save" => {
                save = Some(val(i).to_string());
                i += 1
            }
            "--load" => {
                load = Some(val(i).to_string());
                i += 1
            }
            "--m" => {
                cfg.hnsw.m = val(i).parse().expect("--m");
                i += 1
            }
            "--ef-construction" => {
                cfg.hnsw.ef_construction = val(i).parse().expect("--ef-construction");
                i += 1
            }
            "--ef-search" => {
                ef_list = val(i)
                    .split(',')
                    .map(|x| x.parse().expect("--ef-search"))
                    .collect();
                i += 1
            }
            "--queries" => {
                queries = val(i).parse().expect("--queries");
                i += 1
            }
            "--dim" => {
                cfg.dim = val(i).parse().expect("--dim");
                i += 1
            }
            s => n = s.parse().expect("N (number of patterns)"),
        }
        i += 1;
    }
    println!(
        "bank_scale: n={n} dim={} data={data:?} m={} ef_construction={} keep_pruned={}",
        cfg.dim, cfg.hnsw.m, cfg.hnsw.ef_construction, cfg.hnsw.keep_pruned
    );
    let mut gen = Generator::new(cfg.dim, data, 42);
    if let Some(path) = &load {
        // Same data and queries as the run that saved it: replay the generator.
        for _ in 0..n {
            gen.pattern();
        }
        let bytes = std::fs::read(path).expect("read bank file");
        let t = Instant::now();
        let mut bank = ReasoningBank::from_bytes(&bytes).expect("bank file loads");
        bank.set_ef_upper(cfg.hnsw.ef_upper);
        println!(
            "loaded {} patterns from {path} in {:.2} s",
            bank.len(),
            t.elapsed().as_secs_f64()
        );
        assert_eq!(bank.len(), n, "file holds a different N");
        measure(&mut bank, &mut gen, n, queries, &ef_list);
        return;
    }
    let mut bank = ReasoningBank::new(cfg.clone()).expect("valid config");
    let t0 = Instant::now();
    let mut last = t0;
    let step = (n / 10).max(1);
    for k in 0..n {
        bank.store_pattern(gen.pattern(), 1_700_000_000)
            .expect("valid pattern");
        if (k + 1) % step == 0 {
            let now = Instant::now();
            println!(
                "  built {:>8}  total {:>7.1} s  last chunk {:>7.0} patterns/s",
                k + 1,
                (now - t0).as_secs_f64(),
                step as f64 / (now - last).as_secs_f64()
            );
            last = now;
        }
    }
    let build = t0.elapsed().as_secs_f64();
    println!(
        "build: {build:.1} s ({:.0} patterns/s), indexed: {}",
        n as f64 / build,
        bank.is_indexed()
    );
    if let Some(path) = &save {
        std::fs::write(path, bank.to_bytes()).expect("write bank file");
        println!("saved to {path}");
    }
    measure(&mut bank, &mut gen, n, queries, &ef_list);
}

fn measure(
    bank: &mut ReasoningBank,
    gen: &mut Generator,
    n: usize,
    queries: usize,
    ef_list: &[usize],
) {
    let cfg = bank.config().clone();
    let heap = bank.approx_heap_bytes();
    println!(
        "heap: {heap} bytes = {:.0} bytes/pattern (raw f32 embedding alone: {} bytes)",
        heap as f64 / n as f64,
        cfg.dim * 4
    );

    let t = Instant::now();
    let bytes = bank.to_bytes();
    let ser = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = ReasoningBank::from_bytes(&bytes).expect("own bytes load");
    println!(
        "persist: {} bytes ({:.0} bytes/pattern), to_bytes {ser:.2} s, from_bytes {:.2} s",
        bytes.len(),
        bytes.len() as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(back.len(), bank.len());
    drop((back, bytes));

    let qs: Vec<Vec<f32>> = (0..queries).map(|_| gen.embedding()).collect();
    let ctx = PatternContext::default();
    let t = Instant::now();
    let truth: Vec<Vec<u64>> = qs
        .iter()
        .map(|q| bank.exact_top_k(q, 10).unwrap())
        .collect();
    println!(
        "exact scan: {:.0} µs/query (mean over {queries})",
        t.elapsed().as_secs_f64() * 1e6 / queries as f64
    );
    for &ef in ef_list {
        bank.set_ef_search(ef);
        let mut hit = 0usize;
        for (q, tr) in qs.iter().zip(&truth) {
            let got = bank.index_top_k(q, 10).unwrap();
            hit += got.iter().filter(|x| tr.contains(x)).count();
        }
        let recall = hit as f64 / (10 * queries) as f64;
        let mut evals: Vec<usize> = Vec::with_capacity(queries);
        let mut lat: Vec<f64> = qs
            .iter()
            .map(|q| {
                let t = Instant::now();
                let r = bank.find_similar_patterns(q, &ctx, 10, 0.0).unwrap();
                let dt = t.elapsed().as_secs_f64() * 1e6;
                evals.push(r.similarity_evaluations);
                std::hint::black_box(r);
                dt
            })
            .collect();
        evals.sort_unstable();
        lat.sort_by(f64::total_cmp);
        println!(
            "ef_search={ef:>4}: recall@10 = {recall:.4}; find_similar_patterns(limit 10) p50 = {:.0} µs, p99 = {:.0} µs; similarity evaluations p50 = {}, max = {}",
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
            evals[evals.len() / 2],
            evals[evals.len() - 1]
        );
    }
}
