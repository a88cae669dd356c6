//! Learning and forgetting tests for `sona_core::personalize` on a synthetic
//! catalog with genre clusters. Run with `--nocapture` to see the figures:
//! `cargo test -p sona-core --test personalize_learning -- --nocapture`.

use std::sync::Arc;

use sona_core::personalize::{
    Adapter, BaseProjection, GlobalAdapter, InteractionKind, Observation, PersonalizeConfig,
    ViewerInteraction,
};
use sona_core::rng::Rng;

const GENRES: [&str; 5] = ["thriller", "comedy", "drama", "documentary", "kids"];
const THRILLER: usize = 0;
const COMEDY: usize = 1;

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

fn unit(rng: &mut Rng, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
    normalize(&mut v);
    v
}

struct Catalog {
    d: usize,
    centroids: Vec<Vec<f32>>,
    /// item embeddings, row-major
    items: Vec<f32>,
    genre: Vec<usize>,
    /// per genre: training items (viewer interacts with these)
    train: Vec<Vec<usize>>,
    /// held-out items (all genres), evaluated by rank
    held_out: Vec<usize>,
}

impl Catalog {
    fn new(d: usize, per_genre: usize, n_train: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centroids: Vec<Vec<f32>> = GENRES.iter().map(|_| unit(&mut rng, d)).collect();
        let mut items = Vec::new();
        let mut genre = Vec::new();
        let mut train = vec![Vec::new(); GENRES.len()];
        let mut held_out = Vec::new();
        for (g, c) in centroids.iter().enumerate() {
            for i in 0..per_genre {
                let n = unit(&mut rng, d);
                let mut e: Vec<f32> = c.iter().zip(&n).map(|(a, b)| a + 0.8 * b).collect();
                normalize(&mut e);
                let id = genre.len();
                items.extend(e);
                genre.push(g);
                if i < n_train {
                    train[g].push(id);
                } else {
                    held_out.push(id);
                }
            }
        }
        Catalog {
            d,
            centroids,
            items,
            genre,
            train,
            held_out,
        }
    }

    /// A random unit vector orthogonal to every genre centroid: a context or
    /// profile with no prior preference for any genre.
    fn neutral(&self, rng: &mut Rng) -> Vec<f32> {
        let mut v = unit(rng, self.d);
        for _ in 0..2 {
            for c in &self.centroids {
                let p: f32 = v.iter().zip(c).map(|(a, b)| a * b).sum();
                let n: f32 = c.iter().map(|x| x * x).sum();
                v.iter_mut().zip(c).for_each(|(x, y)| *x -= p / n * y);
            }
        }
        normalize(&mut v);
        v
    }

    fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.d..(i + 1) * self.d]
    }

    /// Flat pool of every training item (the caller's candidate negatives).
    fn pool(&self) -> Vec<f32> {
        self.train
            .iter()
            .flatten()
            .flat_map(|&i| self.item(i).to_vec())
            .collect()
    }

    /// Held-out items sorted by descending adapted score for `q`.
    fn ranking(&self, ad: &Adapter, q: &[f32]) -> Vec<usize> {
        let (y, _) = ad.adapt_embedding(q).unwrap();
        let mut scored: Vec<(f32, usize)> = self
            .held_out
            .iter()
            .map(|&i| (y.iter().zip(self.item(i)).map(|(a, b)| a * b).sum(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// Mean 1-based rank of held-out items of `genre`.
    fn mean_rank(&self, ad: &Adapter, q: &[f32], genre: usize) -> f64 {
        let r = self.ranking(ad, q);
        let pos: Vec<f64> = r
            .iter()
            .enumerate()
            .filter(|(_, &i)| self.genre[i] == genre)
            .map(|(p, _)| (p + 1) as f64)
            .collect();
        pos.iter().sum::<f64>() / pos.len() as f64
    }

    /// NDCG@k of the held-out ranking with `genre` as the relevant set.
    fn ndcg(&self, ad: &Adapter, q: &[f32], genre: usize, k: usize) -> f64 {
        let r = self.ranking(ad, q);
        let dcg: f64 = r
            .iter()
            .take(k)
            .enumerate()
            .filter(|(_, &i)| self.genre[i] == genre)
            .map(|(p, _)| 1.0 / ((p + 2) as f64).log2())
            .sum();
        let n_rel = self
            .held_out
            .iter()
            .filter(|&&i| self.genre[i] == genre)
            .count();
        let idcg: f64 = (0..n_rel.min(k))
            .map(|p| 1.0 / ((p + 2) as f64).log2())
            .sum();
        dcg / idcg
    }
}

fn interaction(kind: InteractionKind, id: usize) -> ViewerInteraction {
    ViewerInteraction::new(kind, format!("item-{id}"))
}

/// `sessions` sessions an hour apart; in each the viewer completes three
/// titles of `liked` and skips three of `disliked` (interleaved), at context `q`.
#[allow(clippy::too_many_arguments)]
fn run_sessions(
    ad: &mut Adapter,
    cat: &Catalog,
    q: &[f32],
    liked: usize,
    disliked: usize,
    sessions: usize,
    t0: &mut i64,
    rng: &mut Rng,
) -> usize {
    let pool = cat.pool();
    let mut adapted = 0;
    for s in 0..sessions {
        for j in 0..3 {
            let like = cat.train[liked][(3 * s + j) % cat.train[liked].len()];
            let skip = cat.train[disliked][(3 * s + j) % cat.train[disliked].len()];
            for (kind, id) in [
                (InteractionKind::WatchComplete, like),
                (InteractionKind::Skip, skip),
            ] {
                let out = ad
                    .update_from_interaction(
                        &interaction(kind, id),
                        *t0,
                        Observation {
                            query: q,
                            item: cat.item(id),
                        },
                        &pool,
                        rng,
                    )
                    .unwrap();
                if out.adapted {
                    adapted += 1;
                }
                *t0 += 60;
            }
        }
        *t0 += 3600;
    }
    adapted
}

fn fresh(cfg: &PersonalizeConfig, base: BaseProjection, user: &str) -> Adapter {
    Adapter::new(
        user,
        cfg,
        Arc::new(base),
        Arc::new(GlobalAdapter::zero(cfg)),
    )
    .unwrap()
}

fn small_cfg() -> PersonalizeConfig {
    PersonalizeConfig {
        d: 32,
        rank: 8,
        ..Default::default()
    }
}

fn learning_case(base: BaseProjection, label: &str) {
    learning_case_cfg(
        PersonalizeConfig {
            d: base.d(),
            rank: 8,
            ..Default::default()
        },
        base,
        label,
    )
}

fn learning_case_cfg(cfg: PersonalizeConfig, base: BaseProjection, label: &str) {
    let cat = Catalog::new(cfg.d, 40, 12, 7);
    let mut rng = Rng::new(99);
    let q = cat.neutral(&mut Rng::new(1234));
    let mut ad = fresh(&cfg, base, "viewer-1");
    let n_held = cat.held_out.len() as f64;
    let thr0 = cat.mean_rank(&ad, &q, THRILLER);
    let com0 = cat.mean_rank(&ad, &q, COMEDY);
    let mut t = 1_700_000_000;
    let adapted = run_sessions(&mut ad, &cat, &q, THRILLER, COMEDY, 4, &mut t, &mut rng);
    let thr1 = cat.mean_rank(&ad, &q, THRILLER);
    let com1 = cat.mean_rank(&ad, &q, COMEDY);
    let st = ad.stats();
    println!(
        "[{label}] held-out mean rank of {} items: thriller {thr0:.1} -> {thr1:.1}, comedy {com0:.1} -> {com1:.1}; \
         adaptations {adapted}, update_norm {:.3}, fisher_mass {:.3e}",
        n_held, st.update_norm, st.fisher_mass
    );
    assert_eq!(adapted, 4, "one adaptation per session");
    // Thrillers rise by at least a fifth of the list and end in the top quarter; comedies fall.
    assert!(thr0 - thr1 > 0.2 * n_held, "thriller rank {thr0} -> {thr1}");
    assert!(thr1 < 0.25 * n_held, "thriller mean rank {thr1}");
    assert!(com1 - com0 > 0.2 * n_held, "comedy rank {com0} -> {com1}");
    assert!(com1 > 0.75 * n_held, "comedy mean rank {com1}");
    // Both LoRA factors moved (B from zero, A from its initialization).
    let (a, b) = ad.factors();
    let a0 = fresh(&cfg, BaseProjection::identity(cfg.d), "viewer-1");
    let (_, magnitude) = ad.adapt_embedding(&q).unwrap();
    println!(
        "[{label}] d = {}: adaptation magnitude ‖W'q − Wq‖/‖Wq‖ = {magnitude:.2}",
        cfg.d
    );
    let (a_init, _) = a0.factors();
    let da: f32 = a.iter().zip(&a_init).map(|(x, y)| (x - y).abs()).sum();
    let nb: f32 = b.iter().map(|x| x.abs()).sum();
    assert!(da > 1e-2 && nb > 1e-2, "A moved {da}, B moved {nb}");
}

#[test]
fn learning_identity_base_ranks_thrillers_up_and_comedies_down() {
    learning_case(BaseProjection::identity(32), "identity W");
}

/// The product shape (d = 384, default config).
#[test]
fn learning_identity_base_at_d384() {
    learning_case(BaseProjection::identity(384), "identity W, d=384");
}

/// With the update norm capped at 1 (‖ΔW_u q‖ ≤ ‖W q‖ for unit q) the
/// viewer's preference is still learned.
#[test]
fn learning_with_capped_update_norm() {
    let cfg = PersonalizeConfig {
        max_update_norm: Some(1.0),
        ..small_cfg()
    };
    learning_case_cfg(
        cfg,
        BaseProjection::identity(32),
        "identity W, update norm <= 1",
    );
}

#[test]
fn learning_dense_base_ranks_thrillers_up_and_comedies_down() {
    let d = 32;
    let mut rng = Rng::new(77);
    // A dense base: identity plus a random perturbation (a non-trivial learned projection).
    let mut w = vec![0f32; d * d];
    for i in 0..d {
        for j in 0..d {
            w[i * d + j] = if i == j { 1.0 } else { 0.0 } + 0.3 * rng.normal() / (d as f32).sqrt();
        }
    }
    learning_case(BaseProjection::dense(d, w).unwrap(), "dense W");
}

/// Task A: at context q_A the viewer completes thrillers and skips comedies.
/// Task B: at an overlapping context q_B (cos ≈ 0.8: both share a strong
/// common component) the opposite, so plain fine-tuning on B overwrites A. Returns
/// (NDCG_A before, after A, after B, NDCG_B before B, after B).
fn forgetting_run(cfg: &PersonalizeConfig, seed: u64) -> [f64; 5] {
    let (ws, sessions) = (2.0f32, 4);
    let cat = Catalog::new(cfg.d, 40, 12, 17 + seed);
    let mut rng = Rng::new(5 + seed);
    let mut crng = Rng::new(2024 + seed);
    // Context directions orthogonal to every genre centroid: before learning,
    // neither context prefers any genre.
    let neutral = |rng: &mut Rng| cat.neutral(rng);
    let shared = neutral(&mut crng);
    let mut qa: Vec<f32> = shared
        .iter()
        .zip(neutral(&mut crng))
        .map(|(s, a)| ws * s + a)
        .collect();
    let mut qb: Vec<f32> = shared
        .iter()
        .zip(neutral(&mut crng))
        .map(|(s, b)| ws * s + b)
        .collect();
    normalize(&mut qa);
    normalize(&mut qb);
    let mut ad = fresh(cfg, BaseProjection::identity(cfg.d), "viewer-f");
    let k = 10;
    let a0 = cat.ndcg(&ad, &qa, THRILLER, k);
    let mut t = 1_700_000_000;
    run_sessions(
        &mut ad, &cat, &qa, THRILLER, COMEDY, sessions, &mut t, &mut rng,
    );
    let a1 = cat.ndcg(&ad, &qa, THRILLER, k);
    let b0 = cat.ndcg(&ad, &qb, COMEDY, k);
    run_sessions(
        &mut ad, &cat, &qb, COMEDY, THRILLER, sessions, &mut t, &mut rng,
    );
    let a2 = cat.ndcg(&ad, &qa, THRILLER, k);
    let b1 = cat.ndcg(&ad, &qb, COMEDY, k);
    [a0, a1, a2, b0, b1]
}

/// Ten catalogs / context pairs (seeds 0..10). For each: learn task A, then
/// task B, and measure how much of the task-A NDCG@10 gain survives.
#[test]
fn forgetting_ewc_keeps_task_a_gain() {
    use sona_core::personalize::EwcAnchor;
    let with_lambda = |l: f32| PersonalizeConfig {
        ewc_lambda: l,
        ..small_cfg()
    };
    let variants = [
        ("EWC++ lambda 3", with_lambda(3.0)),
        ("no EWC (lambda 0)", with_lambda(0.0)),
        ("EWC++ default lambda 0.5", small_cfg()),
        (
            "EWC++ lambda 3, initial anchor",
            PersonalizeConfig {
                ewc_anchor: EwcAnchor::Initial,
                ..with_lambda(3.0)
            },
        ),
    ];
    let seeds = 10;
    let mut summary = Vec::new();
    for (label, cfg) in &variants {
        let (mut kept, mut gain_a, mut gain_b, mut ok) = (0.0, 0.0, 0.0, 0);
        for seed in 0..seeds {
            let [a0, a1, a2, b0, b1] = forgetting_run(cfg, seed);
            // A run that never learned A retains nothing.
            let r = if a1 - a0 > 1e-6 {
                (a2 - a0) / (a1 - a0)
            } else {
                0.0
            };
            if seed == 0 {
                println!(
                    "forgetting [{label}] seed 0: task-A NDCG@10 {a0:.3} -> {a1:.3} (after A) -> {a2:.3} (after B); \
                     task-B NDCG@10 {b0:.3} -> {b1:.3}"
                );
            }
            kept += r / seeds as f64;
            gain_a += (a1 - a0) / seeds as f64;
            gain_b += (b1 - b0) / seeds as f64;
            ok += (r >= 0.9) as usize;
        }
        println!(
            "forgetting [{label}] over {seeds} seeds: mean task-A gain {gain_a:.3}, mean A gain retained after B {:.1}% \
             (>= 90% in {ok}/{seeds}), mean task-B gain {gain_b:.3}",
            100.0 * kept
        );
        summary.push((kept, gain_a, gain_b));
    }
    let (with, without) = (summary[0], summary[1]);
    assert!(
        with.1 > 0.5 && without.1 > 0.5,
        "task A learned: {with:?} {without:?}"
    );
    assert!(
        with.2 > 0.7 && without.2 > 0.7,
        "task B learned: {with:?} {without:?}"
    );
    assert!(
        with.0 >= 0.9,
        "EWC++ keeps only {:.1}% of the A gain",
        100.0 * with.0
    );
    assert!(
        without.0 < 0.5,
        "plain fine-tuning kept {:.1}% of the A gain: the task does not test forgetting",
        100.0 * without.0
    );
}
