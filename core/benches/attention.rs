//! Attention benchmarks.
//!
//! Run: `cargo bench -p sona-core --bench attention -- --warm-up-time 1 --measurement-time 3`
//!
//! - `flash_vs_naive/{naive,flash}/4096`: n_q = n_k = 4096, d = d_v = 64. Before timing, the
//!   bench prints the extra bytes each kernel allocates (counted by a wrapping global
//!   allocator: peak live bytes above the inputs during one call) and the max difference.
//! - `flash_vs_naive/materialized_vec/4096`: the same materialising algorithm with the
//!   vectorized dot product (`dot_product::materialized_vectorized`), to separate "no score matrix + tiling" from "vectorized dot".
//! - `scaling/linear/{1024..16384}` and `scaling/naive/{1024..4096}`: time vs length, d = 64.
//! - `selector/select_top3`: one attention-selector call on a typical query; before timing,
//!   the bench also prints per-call p50/p90/p99 over 20 000 individually timed calls.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sona_core::attention::dot_product::{materialized_vectorized, DotProduct};
use sona_core::attention::flash::Flash;
use sona_core::attention::linear::LinearAttention;
use sona_core::attention::selector::AttentionSelector;
use sona_core::attention::{Attention, AttnInput};
use sona_core::rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak bytes allocated above the current live total while `f` runs.
fn extra_bytes(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    f();
    PEAK.load(Relaxed) - base
}

fn data(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut g = |m: usize| (0..m).map(|_| rng.normal()).collect::<Vec<f32>>();
    (g(n * d), g(n * d), g(n * d))
}

fn flash_vs_naive(c: &mut Criterion) {
    let (n, d) = (4096, 64);
    let (q, k, v) = data(n, d, 1);
    let inp = AttnInput::new(&q, &k, &v, n, n, d, d);
    let mut a = vec![0.0f32; n * d];
    let mut b = vec![0.0f32; n * d];
    let naive_bytes = extra_bytes(|| DotProduct.forward(&inp, &mut a).unwrap());
    let flash_bytes = extra_bytes(|| Flash.forward(&inp, &mut b).unwrap());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!("flash_vs_naive n={n} d={d}: extra bytes allocated naive={naive_bytes} flash={flash_bytes}; max |naive - flash| = {diff:e}");
    let mut g = c.benchmark_group("flash_vs_naive");
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("naive", n), &n, |bch, _| {
        bch.iter(|| DotProduct.forward(black_box(&inp), &mut a).unwrap())
    });
    // A stronger materialising baseline: same score matrix, but with the unrolled
    // (auto-vectorized) dot product from `attention::math`.
    g.bench_with_input(BenchmarkId::new("materialized_vec", n), &n, |bch, _| {
        bch.iter(|| materialized_vectorized(black_box(&inp), &mut a).unwrap())
    });
    g.bench_with_input(BenchmarkId::new("flash", n), &n, |bch, _| {
        bch.iter(|| Flash.forward(black_box(&inp), &mut b).unwrap())
    });
    g.finish();
}

fn scaling(c: &mut Criterion) {
    let d = 64;
    let mut g = c.benchmark_group("scaling");
    g.sample_size(10);
    for n in [1024usize, 2048, 4096, 8192, 16384] {
        let (q, k, v) = data(n, d, 2);
        let inp = AttnInput::new(&q, &k, &v, n, n, d, d);
        let mut out = vec![0.0f32; n * d];
        g.bench_with_input(BenchmarkId::new("linear", n), &n, |bch, _| {
            bch.iter(|| LinearAttention.forward(black_box(&inp), &mut out).unwrap())
        });
        if n <= 4096 {
            g.bench_with_input(BenchmarkId::new("naive", n), &n, |bch, _| {
                bch.iter(|| DotProduct.forward(black_box(&inp), &mut out).unwrap())
            });
        }
    }
    g.finish();
}

fn selector(c: &mut Criterion) {
    let bytes = include_bytes!("../../models/attention-selector.bin");
    let (sel, _) = AttentionSelector::from_bytes(bytes).expect("model loads");
    let q = "Find sci-fi shows similar to Stranger Things on my platforms";
    // Per-call latency percentiles (each call timed on its own, so the median call is one
    // that was not preempted): the p50 the selector target refers to.
    let mut t: Vec<f64> = (0..20_000)
        .map(|_| {
            let s = std::time::Instant::now();
            black_box(sel.select(black_box(q)).unwrap());
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!(
        "selector per-call latency over 20000 calls: p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs",
        t[10_000], t[18_000], t[19_800]
    );
    c.bench_function("selector/select_top3", |b| {
        b.iter(|| sel.select(black_box(q)).unwrap())
    });
}

criterion_group!(benches, flash_vs_naive, scaling, selector);
criterion_main!(benches);
