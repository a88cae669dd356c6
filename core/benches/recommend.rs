//! Recommendation hot paths: top-k selection, EASE training (dense inverse, 1,682 and
//! 4,000 titles) and scoring, BPR scoring, item-kNN scoring, RRF fusion, and a static
//! evaluation pass.
//! Run: `cargo bench -p sona-core --bench recommend -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use sona_core::data::{Dataset, Interaction, Item};
use sona_core::eval::{eval_static, static_split};
use sona_core::recommend::bpr::{Bpr, BprConfig};
use sona_core::recommend::ease::{Ease, EaseConfig};
use sona_core::recommend::fusion::rrf;
use sona_core::recommend::item_knn::{ItemKnn, ItemKnnConfig};
use sona_core::recommend::{top_k, OnlineRecommender};
use sona_core::rng::Rng;

/// ML-100K-shaped synthetic data: `n_users` users with `per_user` items each,
/// item popularity skewed (squared uniform).
fn synthetic(n_users: usize, n_items: usize, per_user: usize, seed: u64) -> Dataset {
    let mut r = Rng::new(seed);
    let items = (0..n_items as u32)
        .map(|id| Item {
            id,
            source_id: id as u64,
            title: format!("Item {id}"),
            year: Some(1990),
            release_date: None,
            genres: vec!["Drama".into()],
            tags: Vec::new(),
            platforms: Vec::new(),
        })
        .collect();
    let mut interactions = Vec::new();
    for u in 0..n_users as u32 {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < per_user {
            let x = r.next_f32();
            seen.insert(((x * x) * n_items as f32) as u32 % n_items as u32);
        }
        for (t, i) in seen.into_iter().enumerate() {
            interactions.push(Interaction {
                user: u,
                item: i,
                rating: 4.0,
                timestamp: t as i64,
            });
        }
    }
    Dataset {
        items,
        user_source_ids: (0..n_users as u64).collect(),
        interactions,
    }
}

fn benches(c: &mut Criterion) {
    let ds = synthetic(943, 1682, 100, 1);
    let mut r = Rng::new(2);
    let scores: Vec<f32> = (0..1682).map(|_| r.next_f32()).collect();
    let mask: Vec<bool> = (0..1682).map(|_| r.chance(0.06)).collect();
    c.bench_function("top_k/1682_items_k10", |b| {
        b.iter(|| top_k(black_box(&scores), 10, &mask))
    });

    let mut g = c.benchmark_group("train");
    g.sample_size(10);
    g.bench_function("ease/1682_items", |b| {
        b.iter(|| Ease::train(black_box(&ds), &EaseConfig::default()).unwrap())
    });
    // A catalog 2.4× ML-100K's (ml-latest-small has 9,742 titles): the dense
    // inverse is O(n³), so this is where its speed shows.
    let wide = synthetic(610, 4000, 160, 3);
    g.bench_function("ease/4000_items", |b| {
        b.iter(|| Ease::train(black_box(&wide), &EaseConfig::default()).unwrap())
    });
    g.bench_function("item_knn/1682_items", |b| {
        b.iter(|| ItemKnn::train(black_box(&ds), &ItemKnnConfig::default()).unwrap())
    });
    g.finish();

    let ease = Ease::train(&ds, &EaseConfig::default()).unwrap();
    let knn = ItemKnn::train(&ds, &ItemKnnConfig::default()).unwrap();
    let bpr = Bpr::train(
        &ds,
        &BprConfig {
            epochs: 1,
            ..Default::default()
        },
    )
    .unwrap();
    c.bench_function("recommend/ease_100_history", |b| {
        b.iter(|| ease.recommend(black_box(7), 10, &mask, 0))
    });
    c.bench_function("recommend/item_knn_100_history", |b| {
        b.iter(|| knn.recommend(black_box(7), 10, &mask, 0))
    });
    c.bench_function("recommend/bpr_128_factors", |b| {
        b.iter(|| bpr.recommend(black_box(7), 10, &mask, 0))
    });

    let lists: Vec<Vec<u32>> = (0..4)
        .map(|s| {
            let mut v: Vec<u32> = (0..1682).collect();
            Rng::new(s).shuffle(&mut v);
            v.truncate(100);
            v
        })
        .collect();
    let refs: Vec<&[u32]> = lists.iter().map(|l| l.as_slice()).collect();
    c.bench_function("rrf/4_lists_of_100", |b| {
        b.iter(|| rrf(black_box(&refs), &[0.3, 0.2, 0.4, 0.1], 60.0, 10))
    });

    let split = static_split(&ds, 0.75, 3).unwrap();
    let ease_s = Ease::train(&split.train, &EaseConfig::default()).unwrap();
    let mut g = c.benchmark_group("eval");
    g.sample_size(10);
    g.bench_function("static/ease_943_users", |b| {
        b.iter(|| eval_static(black_box(&split), &ease_s, 10))
    });
    g.finish();
}

criterion_group!(recommend, benches);
criterion_main!(recommend);
