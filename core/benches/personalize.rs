//! Personalization hot paths at d = 384, r = 8 (the product shape).
//!
//! `cargo bench -p sona-core --bench personalize -- --warm-up-time 1 --measurement-time 3`
//!
//! - `adapt_embedding/{identity,dense}`: W' q for one embedding (both tiers), no allocation.
//! - `adaptation/steps_{1,20}`: one interaction that triggers an adaptation on
//!   a buffer of 6 interactions (3 completes, 3 skips, 4 pool negatives each:
//!   3·(3+4) + 3·4 = 33 pairs): building pairs + N Adam steps (BPR + EWC++) + the Fisher update.
//!   One learning step ≈ (steps_20 − steps_1) / 19.
//! - `load/{f32,f16}` and `save/f32`: adapter bytes ↔ adapter.
//!
//! Every benchmark runs twice: with criterion's wall clock, and (groups
//! prefixed `cpu_`) with the calling thread's CPU-time clock, which does not
//! count time the thread spends preempted — the meaningful figure on a shared,
//! oversubscribed machine.

use std::hint::black_box;
use std::sync::Arc;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sona_core::personalize::{
    load_adapter, Adapter, BaseProjection, Dtype, GlobalAdapter, InteractionKind, Observation,
    PersonalizeConfig, ViewerInteraction,
};
use sona_core::rng::Rng;

const D: usize = 384;

fn unit(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..D).map(|_| rng.normal()).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn global(cfg: &PersonalizeConfig, rng: &mut Rng) -> Arc<GlobalAdapter> {
    Arc::new(
        GlobalAdapter::from_factors(
            1,
            cfg,
            (0..cfg.rank * D).map(|_| 0.05 * rng.normal()).collect(),
            (0..D * cfg.rank).map(|_| 0.05 * rng.normal()).collect(),
        )
        .unwrap(),
    )
}

/// A viewer adapter with one adaptation behind it (non-zero B and Fisher) and
/// `pending` interactions buffered.
fn viewer(cfg: &PersonalizeConfig, base: BaseProjection, pending: usize) -> (Adapter, Vec<f32>) {
    let mut rng = Rng::new(1);
    let g = global(cfg, &mut rng);
    let mut ad = load_adapter(None, "bench-viewer", cfg, Arc::new(base), g).unwrap();
    let pool: Vec<f32> = (0..64).flat_map(|_| unit(&mut rng)).collect();
    let q = unit(&mut rng);
    let mut t = 1_700_000_000;
    let mut feed = |ad: &mut Adapter, n: usize, rng: &mut Rng| {
        for i in 0..n {
            let kind = if i % 2 == 0 {
                InteractionKind::WatchComplete
            } else {
                InteractionKind::Skip
            };
            let item = unit(rng);
            ad.update_from_interaction(
                &ViewerInteraction::new(kind, format!("t{i}")),
                t,
                Observation {
                    query: &q,
                    item: &item,
                },
                &pool,
                rng,
            )
            .unwrap();
            t += 60;
        }
    };
    feed(&mut ad, 5, &mut rng);
    assert_eq!(ad.stats().adaptations, 1);
    assert_eq!(ad.stats().buffered, 0);
    feed(&mut ad, pending, &mut rng);
    (ad, pool)
}

fn dense_base(rng: &mut Rng) -> BaseProjection {
    let w: Vec<f32> = (0..D * D)
        .map(|i| if i / D == i % D { 1.0 } else { 0.0 } + 0.05 * rng.normal())
        .collect();
    BaseProjection::dense(D, w).unwrap()
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in ns.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e3, "µs")
        } else {
            (1e6, "ms")
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => *n,
            _ => 1,
        } as f64;
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "per CPU-second"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

fn wall(c: &mut Criterion) {
    suite(c, "");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    suite(c, "cpu_");
}

fn suite<M: Measurement + 'static>(c: &mut Criterion<M>, prefix: &str) {
    let cfg = PersonalizeConfig::default();
    assert_eq!((cfg.d, cfg.rank), (D, 8));
    let mut rng = Rng::new(7);
    let q = unit(&mut rng);

    let mut g = c.benchmark_group(format!("{prefix}adapt_embedding"));
    for (name, base) in [
        ("identity", BaseProjection::identity(D)),
        ("dense", dense_base(&mut rng)),
    ] {
        let (ad, _) = viewer(&cfg, base, 0);
        let mut out = vec![0f32; D];
        g.bench_function(name, |b| {
            b.iter(|| black_box(ad.adapt_into(black_box(&q), &mut out).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}adaptation"));
    for steps in [1usize, 20] {
        let cfg = PersonalizeConfig {
            steps_per_adaptation: steps,
            ..cfg.clone()
        };
        // 5 buffered; the 6th interaction (an hour later) triggers the adaptation.
        let (ad, pool) = viewer(&cfg, BaseProjection::identity(D), 5);
        let item = unit(&mut rng);
        let int = ViewerInteraction::new(InteractionKind::Skip, "trigger");
        g.bench_function(format!("steps_{steps}"), |b| {
            b.iter_batched(
                || (ad.clone(), Rng::new(3)),
                |(mut ad, mut r)| {
                    let out = ad
                        .update_from_interaction(
                            &int,
                            1_800_000_000,
                            Observation {
                                query: &q,
                                item: &item,
                            },
                            &pool,
                            &mut r,
                        )
                        .unwrap();
                    assert!(out.adapted);
                    black_box(out)
                },
                BatchSize::SmallInput,
            )
        });
    }
    // Buffering only (no adaptation): validation + copy.
    let (ad, pool) = viewer(&cfg, BaseProjection::identity(D), 0);
    let item = unit(&mut rng);
    let int = ViewerInteraction::new(InteractionKind::WatchStart, "buffered");
    g.bench_function("buffer_only", |b| {
        b.iter_batched(
            || ad.clone(),
            |mut ad| {
                let out = ad
                    .update_from_interaction(
                        &int,
                        1_700_000_500,
                        Observation {
                            query: &q,
                            item: &item,
                        },
                        &pool,
                        &mut Rng::new(1),
                    )
                    .unwrap();
                black_box(out)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}load"));
    for (name, dtype) in [("f32", Dtype::F32), ("f16", Dtype::F16)] {
        let cfg = PersonalizeConfig {
            dtype,
            ..cfg.clone()
        };
        let (ad, _) = viewer(&cfg, BaseProjection::identity(D), 0);
        let bytes = ad.to_bytes();
        let (base, glob) = (ad.base().clone(), ad.global().clone());
        g.bench_function(format!("{name}_{}B", bytes.len()), |b| {
            b.iter(|| {
                black_box(
                    load_adapter(
                        Some(black_box(&bytes)),
                        "bench-viewer",
                        &cfg,
                        base.clone(),
                        glob.clone(),
                    )
                    .unwrap(),
                )
            })
        });
    }
    g.finish();

    let (ad, _) = viewer(&cfg, BaseProjection::identity(D), 0);
    c.bench_function(&format!("{prefix}save/f32"), |b| {
        b.iter(|| black_box(ad.to_bytes()))
    });
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_clock, cpu_time);
