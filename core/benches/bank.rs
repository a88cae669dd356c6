//! ReasoningBank benchmarks (d = 384, synthetic clustered query embeddings:
//! 1,000 Gaussian clusters in 50 topics, see `examples/common/bank_data.rs`).
//!
//! ```sh
//! cargo bench -p sona-core --bench bank -- --warm-up-time 1 --measurement-time 3
//! ```
//! Targets: `search_10k` p50 ≤ 200 µs; `search_100k` p50 ≤ 1 ms at recall@10 ≥
//! 0.95 against exact search. Each bank is built once, outside the timed loop
//! (the 100k build takes about a minute on one core); recall@10 and heap bytes
//! per pattern are printed when a bank is built.
//!
//! Measured with the command above (x86-64, AVX2 path, defaults m 16,
//! ef_construction 100, ef_search 64, ef_upper 8):
//! - machine quiet (load ≈ 2): `search_1k_exact_scan` 21.7 µs, `search_10k`
//!   41.2 µs (median 40.7, recall@10 0.999), `search_100k` 125 µs (median 125,
//!   recall@10 0.998, build 18.4 s), `exact_scan_10k` 236 µs,
//!   `apply_patterns_100x10` 3.0 µs;
//! - 2 cores shared at load ≈ 9 (ef_upper 1 then): 63.8 / 171 / 398 / 810 /
//!   9.5 µs respectively.
//!
//! Heap 1,806 / 1,907 / 1,882 bytes per pattern at 1k / 10k / 100k.

#[path = "../examples/common/bank_data.rs"]
mod bank_data;

use bank_data::{Data, Generator};
use criterion::{criterion_group, criterion_main, Criterion};
use sona_core::bank::{BankConfig, Candidate, PatternContext, ReasoningBank};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

const DIM: usize = 384;
const DATA: Data = Data::Clustered {
    clusters: 1000,
    spread: 1.0,
};

struct Fixture {
    bank: ReasoningBank,
    queries: Vec<Vec<f32>>,
}

fn build(n: usize) -> Fixture {
    let mut gen = Generator::new(DIM, DATA, 42);
    let mut bank = ReasoningBank::new(BankConfig::with_dim(DIM)).expect("config");
    let t = Instant::now();
    for _ in 0..n {
        bank.store_pattern(gen.pattern(), 1_700_000_000)
            .expect("pattern");
    }
    let build_s = t.elapsed().as_secs_f64();
    let queries: Vec<Vec<f32>> = (0..256).map(|_| gen.embedding()).collect();
    let (mut hit, mut total) = (0, 0);
    for q in queries.iter().take(100) {
        let truth = bank.exact_top_k(q, 10).expect("query");
        let got = bank.index_top_k(q, 10).expect("query");
        hit += got.iter().filter(|x| truth.contains(x)).count();
        total += truth.len();
    }
    eprintln!(
        "bank n={n} d={DIM}: build {build_s:.1} s, indexed {}, recall@10 vs exact = {:.4}, heap {:.0} bytes/pattern",
        bank.is_indexed(),
        hit as f64 / total as f64,
        bank.approx_heap_bytes() as f64 / n as f64
    );
    Fixture { bank, queries }
}

fn search(c: &mut Criterion, name: &str, n: usize, cell: &'static OnceLock<Fixture>) {
    c.bench_function(name, |b| {
        let f = cell.get_or_init(|| build(n));
        let ctx = PatternContext::default();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % f.queries.len();
            black_box(
                f.bank
                    .find_similar_patterns(&f.queries[i], &ctx, 10, 0.0)
                    .expect("query"),
            )
        })
    });
}

fn benches(c: &mut Criterion) {
    static SMALL: OnceLock<Fixture> = OnceLock::new();
    static LARGE: OnceLock<Fixture> = OnceLock::new();
    static TINY: OnceLock<Fixture> = OnceLock::new();
    search(c, "bank/search_1k_exact_scan", 1_000, &TINY);
    search(c, "bank/search_10k", 10_000, &SMALL);
    search(c, "bank/search_100k", 100_000, &LARGE);

    c.bench_function("bank/exact_scan_10k", |b| {
        let f = SMALL.get_or_init(|| build(10_000));
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % f.queries.len();
            black_box(f.bank.exact_top_k(&f.queries[i], 10).expect("query"))
        })
    });

    c.bench_function("bank/apply_patterns_100x10", |b| {
        let f = SMALL.get_or_init(|| build(10_000));
        let found = f
            .bank
            .find_similar_patterns(&f.queries[0], &PatternContext::default(), 10, 0.0)
            .expect("query");
        let mut cands: Vec<Candidate> = (0..100u64)
            .map(|i| Candidate {
                id: i * 500,
                score: 1.0 / (1 + i) as f32,
            })
            .collect();
        for (k, m) in found.matches.iter().enumerate() {
            cands[k * 7].id = m.successful_results[0];
        }
        b.iter(|| {
            black_box(
                f.bank
                    .apply_patterns(&cands, &found.matches)
                    .expect("apply"),
            )
        })
    });
}

criterion_group!(bank_benches, benches);
criterion_main!(bank_benches);
