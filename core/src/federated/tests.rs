//! Tests of the aggregation against naive references, robustness, the
//! stale-version rule, DP accounting, and a federated learning simulation.

use std::sync::Arc;

use super::aggregate::robust_weighted_mean;
use super::lowrank::{dense_product, frobenius, orthonormalize, truncated_svd};
use super::*;
use crate::personalize::{
    load_adapter, AdapterUpdate, BaseProjection, GlobalAdapter, InteractionKind, Observation,
    PersonalizeConfig, ViewerInteraction,
};
use crate::rng::Rng;

fn cfg(d: usize, r: usize) -> FederatedConfig {
    FederatedConfig {
        d,
        rank: r,
        alpha: 8.0,
        clip_norm: 1e6,
        clip_median_factor: 0.0,
        trim_fraction: 0.0,
        ewc_lambda: 0.0,
        max_sample_weight: 1e9,
        fisher_ratio_cap: 1e9,
        ..Default::default()
    }
}

fn randn(rng: &mut Rng, n: usize, s: f32) -> Vec<f32> {
    (0..n).map(|_| s * rng.normal()).collect()
}

fn update(
    c: &FederatedConfig,
    user: &str,
    a: Vec<f32>,
    b: Vec<f32>,
    fa: Vec<f32>,
    fb: Vec<f32>,
    n: u64,
) -> AdapterUpdate {
    AdapterUpdate {
        user_id: user.into(),
        global_version: 0,
        d: c.d as u32,
        rank: c.rank as u32,
        alpha: c.alpha,
        scale: c.scale(),
        a,
        b,
        fisher_a: fa,
        fisher_b: fb,
        sample_count: n,
    }
}

fn random_update(c: &FederatedConfig, user: &str, rng: &mut Rng) -> AdapterUpdate {
    let (d, r) = (c.d, c.rank);
    let fa: Vec<f32> = (0..r * d).map(|_| rng.uniform(0.0, 2.0)).collect();
    let fb: Vec<f32> = (0..d * r).map(|_| rng.uniform(0.0, 2.0)).collect();
    let n = 1 + rng.below(50) as u64;
    update(
        c,
        user,
        randn(rng, r * d, 0.3),
        randn(rng, d * r, 0.3),
        fa,
        fb,
        n,
    )
}

/// Per-entry Fisher-weighted mean written from the definition, in f64.
fn naive_mean(c: &FederatedConfig, ups: &[AdapterUpdate]) -> Vec<f64> {
    let (d, r) = (c.d, c.rank);
    let s = c.scale() as f64;
    let mut num = vec![0f64; d * d];
    let mut den = vec![0f64; d * d];
    for u in ups {
        let row: Vec<f64> = (0..d)
            .map(|i| (0..r).map(|t| u.fisher_b[i * r + t] as f64).sum())
            .collect();
        let col: Vec<f64> = (0..d)
            .map(|j| (0..r).map(|t| u.fisher_a[t * d + j] as f64).sum())
            .collect();
        let (sr, sc): (f64, f64) = (row.iter().sum(), col.iter().sum());
        for i in 0..d {
            for j in 0..d {
                let delta: f64 = (0..r)
                    .map(|t| s * u.b[i * r + t] as f64 * u.a[t * d + j] as f64)
                    .sum();
                let omega =
                    u.sample_count as f64 * (row[i] * d as f64 / sr) * (col[j] * d as f64 / sc);
                num[i * d + j] += omega * delta;
                den[i * d + j] += omega;
            }
        }
    }
    num.iter().zip(&den).map(|(n, d)| n / d).collect()
}

#[test]
fn aggregate_equals_naive_fisher_weighted_mean() {
    let c = cfg(12, 4);
    let mut rng = Rng::new(1);
    let ups: Vec<_> = (0..7)
        .map(|i| random_update(&c, &format!("u{i}"), &mut rng))
        .collect();
    let (mean, importance, report) = robust_weighted_mean(&c, 0, &ups);
    assert_eq!(report.accepted, 7);
    let reference = naive_mean(&c, &ups);
    for (m, r) in mean.iter().zip(&reference) {
        assert!(
            (*m as f64 - r).abs() <= 1e-5 * (1.0 + r.abs()),
            "{m} vs {r}"
        );
    }
    assert!(importance.iter().all(|&f| f > 0.0));
    // Sample counts matter: weighting all devices equally gives a different mean.
    let equal: Vec<_> = ups
        .iter()
        .cloned()
        .map(|mut u| {
            u.sample_count = 1;
            u
        })
        .collect();
    let (mean_eq, _, _) = robust_weighted_mean(&c, 0, &equal);
    let diff: f32 = mean.iter().zip(&mean_eq).map(|(a, b)| (a - b).abs()).sum();
    assert!(diff > 1e-3);
}

#[test]
fn round_publishes_the_mean_when_it_has_rank_r() {
    // Shared B and uniform Fisher: the weighted mean is B · mean(A), rank ≤ r,
    // so the re-factorized global must reproduce it almost exactly.
    let c = cfg(20, 4);
    let (d, r) = (c.d, c.rank);
    let mut rng = Rng::new(2);
    let b = randn(&mut rng, d * r, 0.5);
    let ups: Vec<_> = (0..5)
        .map(|i| {
            update(
                &c,
                &format!("u{i}"),
                randn(&mut rng, r * d, 0.5),
                b.clone(),
                vec![1.0; r * d],
                vec![1.0; d * r],
                1 + i as u64,
            )
        })
        .collect();
    let reference = naive_mean(&c, &ups);
    let (next, report) = aggregate_round(&c, &GlobalState::new(&c), &ups).unwrap();
    assert_eq!(next.version, 1);
    assert_eq!(report.accepted, 5);
    let dense = next.dense();
    let err: f64 = dense
        .iter()
        .zip(&reference)
        .map(|(x, y)| (*x as f64 - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = reference.iter().map(|y| y * y).sum::<f64>().sqrt();
    assert!(err / norm < 1e-4, "relative error {}", err / norm);
    assert!(report.refactor_rel_error < 1e-4);
    // The published tier loads into a device adapter.
    let bytes = next.global_bytes(&c).unwrap();
    assert_eq!(
        GlobalAdapter::from_bytes(&bytes, &c.personalize())
            .unwrap()
            .version(),
        1
    );
}

/// M = U diag(σ) Vᵀ with random orthonormal U, V (d × d).
fn with_spectrum(d: usize, sigma: &[f64], rng: &mut Rng) -> Vec<f32> {
    let k = sigma.len();
    let mut u: Vec<f64> = (0..d * k).map(|_| rng.normal() as f64).collect();
    let mut v: Vec<f64> = (0..d * k).map(|_| rng.normal() as f64).collect();
    orthonormalize(&mut u, d, k);
    orthonormalize(&mut v, d, k);
    let mut m = vec![0f32; d * d];
    for i in 0..d {
        for j in 0..d {
            m[i * d + j] = (0..k)
                .map(|t| u[i * k + t] * sigma[t] * v[j * k + t])
                .sum::<f64>() as f32;
        }
    }
    m
}

#[test]
fn refactorization_error_matches_the_best_rank_r() {
    let d = 48;
    let r = 8;
    let mut rng = Rng::new(3);
    let sigma: Vec<f64> = (0..d).map(|i| 5.0 * 0.8f64.powi(i as i32)).collect();
    let m = with_spectrum(d, &sigma, &mut rng);
    let svd = truncated_svd(&m, d, r, 8, 4, &mut rng);
    for t in 0..r {
        assert!(
            (svd.s[t] as f64 - sigma[t]).abs() < 1e-3 * sigma[0],
            "σ{t}: {} vs {}",
            svd.s[t],
            sigma[t]
        );
    }
    let (a, b) = super::lowrank::to_factors(&svd, d, r, 2.0);
    let approx = dense_product(&a, &b, d, r, 2.0);
    let err2: f64 = m
        .iter()
        .zip(&approx)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    // Eckart–Young: the best rank-r error² is the tail energy Σ_{i≥r} σ_i².
    let best2: f64 = sigma[r..].iter().map(|s| s * s).sum();
    assert!(err2 >= best2 * 0.999, "below the optimum: {err2} < {best2}");
    assert!(err2 <= best2 * 1.02, "err² {err2} vs optimal {best2}");
    // A rank-r matrix is reproduced.
    let m2 = with_spectrum(d, &sigma[..r], &mut rng);
    let svd2 = truncated_svd(&m2, d, r, 8, 2, &mut rng);
    let (a2, b2) = super::lowrank::to_factors(&svd2, d, r, 1.0);
    let back = dense_product(&a2, &b2, d, r, 1.0);
    let e: f32 = m2
        .iter()
        .zip(&back)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(e < 1e-4, "max error {e}");
}

/// 90 honest devices near a shared target and 10 poisoned ones.
#[test]
fn poisoned_clients_do_not_move_the_aggregate() {
    let mut c = cfg(16, 4);
    c.clip_norm = 1e6;
    c.clip_median_factor = 3.0;
    c.trim_fraction = 0.1;
    c.fisher_ratio_cap = 10.0;
    c.max_sample_weight = 100.0;
    let (d, r) = (c.d, c.rank);
    let mut rng = Rng::new(4);
    let a0 = randn(&mut rng, r * d, 0.3);
    let b0 = randn(&mut rng, d * r, 0.3);
    let honest: Vec<_> = (0..90)
        .map(|i| {
            let a: Vec<f32> = a0.iter().map(|x| x + 0.02 * rng.normal()).collect();
            let b: Vec<f32> = b0.iter().map(|x| x + 0.02 * rng.normal()).collect();
            update(
                &c,
                &format!("h{i}"),
                a,
                b,
                vec![1.0; r * d],
                vec![1.0; d * r],
                20,
            )
        })
        .collect();
    let mut all = honest.clone();
    for i in 0..5 {
        // Huge norms, huge claimed sample counts and Fisher mass on one entry.
        let mut fa = vec![0.0; r * d];
        fa[i] = 1e30;
        let mut fb = vec![0.0; d * r];
        fb[i] = 1e30;
        all.push(update(
            &c,
            &format!("big{i}"),
            vec![1e3; r * d],
            vec![-1e3; d * r],
            fa,
            fb,
            u64::MAX,
        ));
    }
    for i in 0..5 {
        let mut a = a0.clone();
        a[i] = if i % 2 == 0 { f32::NAN } else { f32::INFINITY };
        all.push(update(
            &c,
            &format!("nan{i}"),
            a,
            b0.clone(),
            vec![1.0; r * d],
            vec![1.0; d * r],
            20,
        ));
    }
    let (clean, _, _) = robust_weighted_mean(&c, 0, &honest);
    let (robust, _, report) = robust_weighted_mean(&c, 0, &all);
    assert_eq!(report.accepted, 95);
    assert_eq!(report.rejected.len(), 5);
    assert!(report
        .rejected
        .iter()
        .all(|(_, why)| matches!(why, Rejection::Invalid(_))));
    assert!(report.clipped >= 5);
    let dist = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let rel = dist(&robust, &clean) / frobenius(&clean);
    assert!(rel < 0.05, "poisoned aggregate moved by {rel}");
    // Without the defences the same poison wrecks the mean (the test can fail).
    let mut naive = c.clone();
    naive.clip_norm = 1e30;
    naive.clip_median_factor = 0.0;
    naive.trim_fraction = 0.0;
    naive.fisher_ratio_cap = 1e30;
    naive.max_sample_weight = 1e30;
    let (broken, _, _) = robust_weighted_mean(&naive, 0, &all);
    assert!(dist(&broken, &clean) / frobenius(&clean) > 1.0);
    // And a round over the poisoned set publishes a finite global close to the clean one.
    let (s, _) = aggregate_round(&c, &GlobalState::new(&c), &all).unwrap();
    let (s_clean, _) = aggregate_round(&c, &GlobalState::new(&c), &honest).unwrap();
    assert!(dist(&s.dense(), &s_clean.dense()) / frobenius(&s_clean.dense()) < 0.05);
}

#[test]
fn stale_version_rule() {
    let mut c = cfg(8, 4);
    c.max_staleness = 2;
    c.staleness_decay = 0.5;
    let mut rng = Rng::new(5);
    let at = |v: u64, rng: &mut Rng| {
        let mut u = random_update(&c, &format!("v{v}"), rng);
        u.global_version = v;
        u
    };
    assert_eq!(check_update(&c, 5, &at(5, &mut rng)), Ok(1.0));
    assert_eq!(check_update(&c, 5, &at(4, &mut rng)), Ok(0.5));
    assert_eq!(check_update(&c, 5, &at(3, &mut rng)), Ok(0.25));
    assert_eq!(
        check_update(&c, 5, &at(2, &mut rng)),
        Err(Rejection::Stale {
            update: 2,
            current: 5,
            max: 2
        })
    );
    assert_eq!(
        check_update(&c, 5, &at(6, &mut rng)),
        Err(Rejection::FromFuture {
            update: 6,
            current: 5
        })
    );
    let mut empty = at(5, &mut rng);
    empty.sample_count = 0;
    assert_eq!(check_update(&c, 5, &empty), Err(Rejection::Empty));
    // admit_validated applies the same rules to an already validated update …
    for v in [5, 4, 3, 2, 6] {
        let u = at(v, &mut rng);
        assert_eq!(admit_validated(&c, 5, &u), check_update(&c, 5, &u));
    }
    assert_eq!(admit_validated(&c, 5, &empty), Err(Rejection::Empty));
    let mut wide = at(5, &mut rng);
    wide.d += 1;
    assert!(matches!(
        admit_validated(&c, 5, &wide),
        Err(Rejection::Invalid(_))
    ));
    // … and only check_update scans the contents.
    let mut nan = at(5, &mut rng);
    nan.a[0] = f32::NAN;
    assert!(matches!(
        check_update(&c, 5, &nan),
        Err(Rejection::Invalid(_))
    ));
    assert_eq!(admit_validated(&c, 5, &nan), Ok(1.0));
    // In a round, stale updates are reported and do not change the mean;
    // a one-version-old update counts half.
    let fresh = at(5, &mut rng);
    let stale = at(1, &mut rng);
    let (m1, _, _) = robust_weighted_mean(&c, 5, std::slice::from_ref(&fresh));
    let (m2, _, rep) = robust_weighted_mean(&c, 5, &[fresh.clone(), stale]);
    assert_eq!(m1, m2);
    assert_eq!(rep.rejected.len(), 1);
    let mut old = at(4, &mut rng);
    let (mut fresh_double, mut old_single) = (fresh.clone(), old.clone());
    fresh_double.sample_count *= 2;
    old.sample_count *= 2;
    old_single.global_version = 5;
    old_single.sample_count = old.sample_count / 2;
    let (half, _, _) = robust_weighted_mean(&c, 5, &[fresh.clone(), old]);
    let (same, _, _) = robust_weighted_mean(&c, 5, &[fresh, old_single]);
    for (x, y) in half.iter().zip(&same) {
        assert!((x - y).abs() < 1e-5);
    }
    // Too few accepted updates: no round.
    let mut c2 = c.clone();
    c2.min_updates = 2;
    let one = at(0, &mut rng);
    assert_eq!(
        aggregate_round(&c2, &GlobalState::new(&c2), &[one]),
        Err(FederatedError::NotEnoughUpdates { need: 2, have: 1 })
    );
}

#[test]
fn ewc_pulls_toward_the_previous_global_in_closed_form() {
    let mut c = cfg(12, 4);
    c.ewc_lambda = 3.0;
    c.fisher_decay = 0.6;
    let (d, r) = (c.d, c.rank);
    let mut rng = Rng::new(6);
    let b = randn(&mut rng, d * r, 0.5);
    let ones = |n| vec![1.0f32; n];
    let round = |a: Vec<f32>| vec![update(&c, "u", a, b.clone(), ones(r * d), ones(d * r), 3)];
    let s0 = GlobalState::new(&c);
    let (s1, _) = aggregate_round(&c, &s0, &round(randn(&mut rng, r * d, 0.5))).unwrap();
    // Round 1: F_g was 0, so G1 = mean; F_g becomes (1 − γ)·1.
    assert!(s1.fisher.iter().all(|&f| (f - 0.4).abs() < 1e-6));
    let u2 = round(randn(&mut rng, r * d, 0.5));
    let m2 = naive_mean(&c, &u2);
    let g1 = s1.dense();
    let (s2, _) = aggregate_round(&c, &s1, &u2).unwrap();
    let pull = 3.0 * 0.4;
    let g2 = s2.dense();
    for k in 0..d * d {
        let expect = (m2[k] + pull * g1[k] as f64) / (1.0 + pull);
        assert!(
            (g2[k] as f64 - expect).abs() < 1e-4,
            "{k}: {} vs {expect}",
            g2[k]
        );
    }
    assert!(s2
        .fisher
        .iter()
        .all(|&f| (f - (0.6 * 0.4 + 0.4)).abs() < 1e-6));
}

#[test]
fn state_round_trips_and_rejects_corruption() {
    let c = cfg(8, 4);
    let mut rng = Rng::new(7);
    let ups: Vec<_> = (0..3)
        .map(|i| random_update(&c, &format!("u{i}"), &mut rng))
        .collect();
    let (s, _) = aggregate_round(&c, &GlobalState::new(&c), &ups).unwrap();
    let bytes = s.to_bytes();
    assert_eq!(GlobalState::from_bytes(&bytes, &c).unwrap(), s);
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 3] ^= 0x40;
    assert!(GlobalState::from_bytes(&bad, &c).is_err());
    let other = cfg(16, 4);
    assert!(matches!(
        GlobalState::from_bytes(&bytes, &other),
        Err(FederatedError::StateMismatch { .. })
    ));
    assert!(matches!(
        aggregate_round(&other, &s, &ups),
        Err(FederatedError::StateMismatch { .. })
    ));
}

#[test]
fn dp_noise_and_epsilon_accounting() {
    let dp = DpConfig {
        noise_multiplier: 1.0,
        delta: 1e-5,
    };
    // ρ = 1/2, ε = 0.5 + 2 √(0.5 ln 1e5).
    let e1 = zcdp_epsilon(1.0, 1, 1e-5);
    assert!((e1 - (0.5 + 2.0 * (0.5 * 1e5f64.ln()).sqrt())).abs() < 1e-9);
    assert!(zcdp_epsilon(1.0, 4, 1e-5) > e1);
    assert!(zcdp_epsilon(2.0, 1, 1e-5) < e1);
    let mut v = vec![0f32; 20_000];
    dp.add_noise(&mut v, 4.0, 10, &mut Rng::new(8));
    let sd = (v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len() as f64).sqrt();
    assert!((sd - 0.4).abs() < 0.01, "noise sd {sd}");
    let mut c = cfg(8, 4);
    c.dp = Some(dp.clone());
    c.trim_fraction = 0.1;
    assert!(matches!(
        c.validate(),
        Err(FederatedError::InvalidConfig {
            field: "trim_fraction",
            ..
        })
    ));
    c.trim_fraction = 0.0;
    let mut rng = Rng::new(9);
    let ups: Vec<_> = (0..4)
        .map(|i| random_update(&c, &format!("u{i}"), &mut rng))
        .collect();
    let (s1, r1) = aggregate_round(&c, &GlobalState::new(&c), &ups).unwrap();
    assert_eq!(r1.epsilon, Some((e1, 1e-5)));
    let (_, r2) = aggregate_round(&c, &s1, &ups).unwrap();
    assert_eq!(r2.epsilon.unwrap().0, zcdp_epsilon(1.0, 2, 1e-5));
}

fn unit(rng: &mut Rng, d: usize) -> Vec<f32> {
    let v = randn(rng, d, 1.0);
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// 100 devices in 4 taste clusters (non-IID: each cluster sees only its own
/// quarter of the catalog) learn on-device and sync for 3 rounds. New users,
/// with only the global tier, must rank held-out item pairs better than with
/// the version-0 global.
#[test]
fn federated_simulation_improves_ranking_for_new_users() {
    let d = 16;
    let pcfg = PersonalizeConfig {
        d,
        rank: 4,
        alpha: 8.0,
        base_lr: 0.05,
        min_interactions: 4,
        ..Default::default()
    };
    let fcfg = FederatedConfig {
        trim_fraction: 0.05,
        ..FederatedConfig::for_personalize(&pcfg)
    };
    let mut rng = Rng::new(10);
    // Taste: relevance(q, e) = ⟨(P + 0.5 U_c) q, e⟩, P shared (rank 2), U_c per cluster.
    let low_rank = |rng: &mut Rng, k: usize, s: f32| {
        let a = randn(rng, k * d, 1.0);
        let b = randn(rng, d * k, 1.0);
        dense_product(&a, &b, d, k, s / (d as f32).sqrt())
    };
    let p = low_rank(&mut rng, 2, 1.0);
    let clusters: Vec<Vec<f32>> = (0..4).map(|_| low_rank(&mut rng, 2, 0.5)).collect();
    let truth = |c: usize, q: &[f32], e: &[f32]| -> f32 {
        (0..d)
            .map(|i| {
                let row: f32 = (0..d)
                    .map(|j| (p[i * d + j] + clusters[c][i * d + j]) * q[j])
                    .sum();
                row * e[i]
            })
            .sum()
    };
    let items: Vec<Vec<f32>> = (0..200).map(|_| unit(&mut rng, d)).collect();
    let base = Arc::new(
        BaseProjection::dense(
            d,
            (0..d * d)
                .map(|k| if k % (d + 1) == 0 { 0.1 } else { 0.0 })
                .collect(),
        )
        .unwrap(),
    );
    let global0 = Arc::new(GlobalAdapter::zero(&pcfg));
    let mut devices: Vec<_> = (0..100)
        .map(|u| {
            load_adapter(
                None,
                &format!("dev{u}"),
                &pcfg,
                base.clone(),
                global0.clone(),
            )
            .unwrap()
        })
        .collect();
    // Held-out evaluation: new users, fresh queries, item pairs from the whole catalog.
    let mut eval_rng = Rng::new(11);
    let eval: Vec<(usize, Vec<f32>, usize, usize)> = (0..600)
        .map(|_| {
            (
                eval_rng.below(4),
                unit(&mut eval_rng, d),
                eval_rng.below(200),
                eval_rng.below(200),
            )
        })
        .collect();
    let accuracy = |global: &Arc<GlobalAdapter>| -> f64 {
        let fresh = load_adapter(None, "new-user", &pcfg, base.clone(), global.clone()).unwrap();
        let mut good = 0f64;
        for (c, q, i, j) in &eval {
            let t = truth(*c, q, &items[*i]) - truth(*c, q, &items[*j]);
            let s = fresh.score(q, &items[*i]).unwrap() - fresh.score(q, &items[*j]).unwrap();
            if s == 0.0 {
                good += 0.5;
            } else if (s > 0.0) == (t > 0.0) {
                good += 1.0;
            }
        }
        good / eval.len() as f64
    };
    let before = accuracy(&global0);
    let mut state = GlobalState::new(&fcfg);
    let mut t = 1_000_000i64;
    let mut history = vec![];
    for _round in 0..3 {
        let mut ups = Vec::new();
        for (u, dev) in devices.iter_mut().enumerate() {
            let c = u % 4;
            let mine: Vec<usize> = (c * 50..(c + 1) * 50).collect();
            let pool: Vec<f32> = mine.iter().flat_map(|&k| items[k].clone()).collect();
            for _ in 0..8 {
                let q = unit(&mut rng, d);
                let cands: Vec<usize> = (0..6).map(|_| *rng.pick(&mine)).collect();
                let best = *cands
                    .iter()
                    .max_by(|&&x, &&y| truth(c, &q, &items[x]).total_cmp(&truth(c, &q, &items[y])))
                    .unwrap();
                let worst = *cands
                    .iter()
                    .min_by(|&&x, &&y| truth(c, &q, &items[x]).total_cmp(&truth(c, &q, &items[y])))
                    .unwrap();
                for (k, kind) in [
                    (best, InteractionKind::WatchComplete),
                    (worst, InteractionKind::Skip),
                ] {
                    t += 4000;
                    dev.update_from_interaction(
                        &ViewerInteraction::new(kind, format!("i{k}")),
                        t,
                        Observation {
                            query: &q,
                            item: &items[k],
                        },
                        &pool,
                        &mut rng,
                    )
                    .unwrap();
                }
            }
            dev.adapt_pending(t, &pool, &mut rng).unwrap();
            let up = AdapterUpdate::from_bytes(&dev.export_update().to_bytes()).unwrap();
            ups.push(up);
        }
        let (next, report) = aggregate_round(&fcfg, &state, &ups).unwrap();
        assert_eq!(report.accepted, 100);
        state = next;
        let bytes = state.global_bytes(&fcfg).unwrap();
        for dev in devices.iter_mut() {
            assert_eq!(dev.apply_global(&bytes).unwrap(), state.version);
        }
        history.push(accuracy(devices[0].global()));
    }
    eprintln!("held-out pairwise accuracy for new users: v0 {before:.3}, after rounds {history:?}");
    let after = *history.last().unwrap();
    assert!(before < 0.6, "baseline should be near chance, got {before}");
    assert!(
        after > before + 0.1,
        "global did not help new users: {before} → {history:?}"
    );
}

#[test]
fn adaptive_clipping_scales_outliers_to_a_multiple_of_the_median_norm() {
    let mut c = cfg(10, 4);
    c.clip_median_factor = 3.0;
    let (d, r) = (c.d, c.rank);
    let mut rng = Rng::new(12);
    let mut ups: Vec<_> = (0..9)
        .map(|i| {
            update(
                &c,
                &format!("u{i}"),
                randn(&mut rng, r * d, 0.3),
                randn(&mut rng, d * r, 0.3),
                vec![1.0; r * d],
                vec![1.0; d * r],
                5,
            )
        })
        .collect();
    let big_a = randn(&mut rng, r * d, 3.0);
    let big_b = randn(&mut rng, d * r, 3.0);
    ups.push(update(
        &c,
        "big",
        big_a.clone(),
        big_b.clone(),
        vec![1.0; r * d],
        vec![1.0; d * r],
        5,
    ));
    let norm = |u: &AdapterUpdate| frobenius(&dense_product(&u.a, &u.b, d, r, c.scale()));
    let mut norms: Vec<f64> = ups.iter().map(norm).collect();
    norms.sort_by(f64::total_cmp);
    let clip = 3.0 * norms[5];
    let big_norm = norm(&ups[9]);
    assert!(big_norm > clip);
    let (mean, _, report) = robust_weighted_mean(&c, 0, &ups);
    assert_eq!(report.clipped, 1);
    // Reference: the outlier pre-scaled to norm `clip`, no adaptive clipping.
    let mut manual = ups.clone();
    manual[9].b = big_b.iter().map(|x| x * (clip / big_norm) as f32).collect();
    let mut off = c.clone();
    off.clip_median_factor = 0.0;
    let (expect, _, rep2) = robust_weighted_mean(&off, 0, &manual);
    assert_eq!(rep2.clipped, 0);
    for (x, y) in mean.iter().zip(&expect) {
        assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

/// An update whose ΔW (scale 2) is `v` on every entry of row 0 and 0 elsewhere,
/// with the given Fisher mass and sample count.
fn row0_update(c: &FederatedConfig, user: &str, v: f32, fa: Vec<f32>, n: u64) -> AdapterUpdate {
    let (d, r) = (c.d, c.rank);
    assert_eq!(c.scale(), 2.0);
    let mut a = vec![0.0; r * d];
    a[..d].iter_mut().for_each(|x| *x = 1.0);
    let mut b = vec![0.0; d * r];
    b[0] = v / 2.0;
    update(c, user, a, b, fa, vec![1.0; d * r], n)
}

#[test]
fn trimmed_mean_drops_both_tails_and_keeps_importance_normalized() {
    let mut c = cfg(4, 4);
    c.trim_fraction = 0.2; // 5 updates → 1 dropped from each end per entry.
    let vals = [(4.0, 1), (1.0, 1), (100.0, 1), (3.0, 3), (2.0, 2)];
    let ups: Vec<_> = vals
        .iter()
        .enumerate()
        .map(|(i, &(v, n))| row0_update(&c, &format!("u{i}"), v, vec![1.0; 16], n))
        .collect();
    let (mean, importance, report) = robust_weighted_mean(&c, 0, &ups);
    assert_eq!(report.trimmed_per_side, 1);
    // Row 0: drop 1 and 100, keep 2 (w 2), 3 (w 3), 4 (w 1): (4 + 9 + 4) / 6.
    for (j, m) in mean[..4].iter().enumerate() {
        assert!((m - 17.0 / 6.0).abs() < 1e-5, "{j}: {m}");
    }
    assert!(mean[4..].iter().all(|&x| x == 0.0));
    // Uniform Fisher, equal weights: the importance Σω / Σw over the kept values
    // is exactly 1.
    let equal: Vec<_> = ups
        .iter()
        .cloned()
        .map(|mut u| {
            u.sample_count = 4;
            u
        })
        .collect();
    let (mean_eq, importance_eq, _) = robust_weighted_mean(&c, 0, &equal);
    assert!((mean_eq[0] - 3.0).abs() < 1e-6, "{}", mean_eq[0]);
    for f in &importance_eq {
        assert!((f - 1.0).abs() < 1e-6, "importance {f}");
    }
    // Unequal weights (kept: w 2, 3, 1 of 8 in all): still exactly 1, since the
    // importance divides by the kept clients' own Σw (a division by the average
    // kept share, 8 · 3/5, gave 1.25).
    for f in &importance {
        assert!((f - 1.0).abs() < 1e-6, "importance {f}");
    }
    // Fisher mass only on input column 1 moves that device's weight there:
    // its normalized column importance is 4 on column 1 and 0 elsewhere.
    let mut fa = vec![0.0; 16];
    fa[1] = 1.0;
    let two = vec![
        row0_update(&c, "a", 1.0, vec![1.0; 16], 1),
        row0_update(&c, "b", 5.0, fa, 1),
    ];
    c.trim_fraction = 0.0;
    let (m2, f2, _) = robust_weighted_mean(&c, 0, &two);
    // Column 1: ω = 1 and 4 → (1 + 20) / 5; other columns only device a → 1.
    assert!((m2[1] - 21.0 / 5.0).abs() < 1e-5, "{}", m2[1]);
    assert!((m2[0] - 1.0).abs() < 1e-6 && (m2[2] - 1.0).abs() < 1e-6);
    assert!((f2[1] - 2.5).abs() < 1e-6 && (f2[0] - 0.5).abs() < 1e-6);
    // The cap bounds a device's concentrated importance: cap 2 → ω = 1 and 2.
    c.fisher_ratio_cap = 2.0;
    let (m3, _, _) = robust_weighted_mean(&c, 0, &two);
    assert!((m3[1] - 11.0 / 3.0).abs() < 1e-5, "{}", m3[1]);
}

#[test]
fn dp_rounds_use_uniform_weights_and_only_the_fixed_clip() {
    let mut c = cfg(4, 4);
    c.clip_median_factor = 1.0;
    let mut skew = vec![0.0; 16];
    skew[0] = 5.0;
    let ups = vec![
        row0_update(&c, "a", 1.0, vec![1.0; 16], 1),
        row0_update(&c, "b", 4.0, skew, 30),
        row0_update(&c, "c", 100.0, vec![1.0; 16], 2),
    ];
    // Without DP the outlier is clipped to the median norm and weights differ.
    let (plain, _, rep) = robust_weighted_mean(&c, 0, &ups);
    assert_eq!(rep.clipped, 1);
    assert!((plain[2] - 35.0).abs() > 1.0);
    // Under DP: every device weighs 1 and only clip_norm (1e6) applies, so each
    // entry of row 0 is the plain mean (1 + 4 + 100) / 3 = 35 and importance 1.
    c.dp = Some(DpConfig {
        noise_multiplier: 1.0,
        delta: 1e-5,
    });
    let (dp_mean, dp_imp, rep) = robust_weighted_mean(&c, 0, &ups);
    assert_eq!(rep.clipped, 0);
    for (j, m) in dp_mean[..4].iter().enumerate() {
        assert!((m - 35.0).abs() < 1e-4, "{j}: {m}");
    }
    assert!(dp_imp.iter().all(|&f| (f - 1.0).abs() < 1e-6));
    // σ = z · C / n uses the accepted count.
    assert!(
        (DpConfig {
            noise_multiplier: 2.0,
            delta: 1e-5
        }
        .sigma(3.0, 4)
            - 1.5)
            .abs()
            < 1e-7
    );
}
