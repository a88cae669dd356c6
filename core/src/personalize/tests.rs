//! Behaviour tests of the adapter service: validation, decision, formats, export.

use std::sync::Arc;

use super::adapter::UserState;
use super::*;
use crate::codec::CodecError;
use crate::rng::Rng;

fn unit(rng: &mut Rng, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn cfg(d: usize) -> PersonalizeConfig {
    PersonalizeConfig {
        d,
        rank: 8,
        ..Default::default()
    }
}

fn adapter(c: &PersonalizeConfig) -> Adapter {
    load_adapter(
        None,
        "viewer",
        c,
        Arc::new(BaseProjection::identity(c.d)),
        Arc::new(GlobalAdapter::zero(c)),
    )
    .unwrap()
}

/// Feed `n` alternating complete/skip interactions at times t, t+60, …; returns outcomes.
fn feed(ad: &mut Adapter, n: usize, t: i64, rng: &mut Rng) -> Vec<UpdateOutcome> {
    let d = ad.config().d;
    let q = unit(&mut Rng::new(1), d);
    let pool: Vec<f32> = (0..20).flat_map(|_| unit(rng, d)).collect();
    (0..n)
        .map(|i| {
            let item = unit(rng, d);
            let kind = if i % 2 == 0 {
                InteractionKind::WatchComplete
            } else {
                InteractionKind::Skip
            };
            ad.update_from_interaction(
                &ViewerInteraction::new(kind, format!("c{i}")),
                t + 60 * i as i64,
                Observation {
                    query: &q,
                    item: &item,
                },
                &pool,
                rng,
            )
            .unwrap()
        })
        .collect()
}

/// An adapter with one adaptation behind it and two interactions pending.
fn trained(c: &PersonalizeConfig) -> Adapter {
    let mut ad = adapter(c);
    let mut rng = Rng::new(3);
    let out = feed(&mut ad, 5, 1_000, &mut rng);
    assert!(out[4].adapted);
    feed(&mut ad, 2, 2_000, &mut rng);
    ad
}

fn snap(ad: &Adapter) -> (UserState, GlobalAdapter) {
    ad.snapshot()
}

#[test]
fn every_rejected_call_leaves_the_adapter_unchanged() {
    let c = cfg(16);
    let mut ad = trained(&c);
    let before = snap(&ad);
    let d = c.d;
    let good = vec![0.1f32; d];
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    let mut inf = good.clone();
    inf[0] = f32::INFINITY;
    let pool = vec![0.2f32; 4 * d];
    let mut pool_nan = pool.clone();
    pool_nan[2 * d + 1] = f32::NAN;
    let mut rng = Rng::new(9);
    let ok_int = ViewerInteraction::new(InteractionKind::WatchComplete, "x");
    let mut bad_hour = ok_int.clone();
    bad_hour.context.hour_of_day = 24;
    type Case<'a> = (&'a str, ViewerInteraction, Vec<f32>, Vec<f32>, Vec<f32>);
    let cases: Vec<Case> = vec![
        (
            "short query",
            ok_int.clone(),
            vec![0.1; d - 1],
            good.clone(),
            pool.clone(),
        ),
        (
            "long item",
            ok_int.clone(),
            good.clone(),
            vec![0.1; d + 1],
            pool.clone(),
        ),
        (
            "NaN query",
            ok_int.clone(),
            nan.clone(),
            good.clone(),
            pool.clone(),
        ),
        (
            "inf item",
            ok_int.clone(),
            good.clone(),
            inf.clone(),
            pool.clone(),
        ),
        (
            "ragged pool",
            ok_int.clone(),
            good.clone(),
            good.clone(),
            vec![0.0; d + 3],
        ),
        (
            "NaN pool",
            ok_int.clone(),
            good.clone(),
            good.clone(),
            pool_nan,
        ),
        (
            "rating 7",
            ViewerInteraction::new(InteractionKind::Rating { stars: 7.0 }, "x"),
            good.clone(),
            good.clone(),
            pool.clone(),
        ),
        (
            "rating NaN",
            ViewerInteraction::new(InteractionKind::Rating { stars: f32::NAN }, "x"),
            good.clone(),
            good.clone(),
            pool.clone(),
        ),
        (
            "rating 0",
            ViewerInteraction::new(InteractionKind::Rating { stars: 0.0 }, "x"),
            good.clone(),
            good.clone(),
            pool.clone(),
        ),
        (
            "hour 24",
            bad_hour,
            good.clone(),
            good.clone(),
            pool.clone(),
        ),
        (
            "huge content id",
            ViewerInteraction::new(InteractionKind::Skip, "z".repeat(10_000)),
            good.clone(),
            good.clone(),
            pool.clone(),
        ),
    ];
    for (label, int, q, item, pool) in cases {
        // `now` far in the future so an accepted call would adapt.
        let r = ad.update_from_interaction(
            &int,
            1 << 40,
            Observation {
                query: &q,
                item: &item,
            },
            &pool,
            &mut rng,
        );
        assert!(r.is_err(), "{label} accepted");
        assert!(!r.unwrap_err().to_string().is_empty());
        assert!(snap(&ad) == before, "{label} changed the adapter");
    }
    // Read-only operations reject too.
    let mut out = vec![0.0; d];
    assert!(ad.adapt_into(&nan, &mut out).is_err());
    assert!(ad.adapt_into(&good, &mut vec![0.0; d - 1]).is_err());
    assert!(adapt_embeddings(&ad, &vec![0.0; d + 1]).is_err());
    assert!(ad.score(&good, &inf).is_err());
    // Bad global tiers.
    let stale = GlobalAdapter::zero(&c).to_bytes();
    assert!(matches!(
        ad.apply_global(&stale),
        Err(PersonalizeError::StaleGlobal { .. })
    ));
    let other = GlobalAdapter::zero(&cfg(32));
    let mut other = other;
    other.version = 5;
    assert!(matches!(
        ad.apply_global(&other.to_bytes()),
        Err(PersonalizeError::Mismatch { .. })
    ));
    let mut g = GlobalAdapter::zero(&c);
    g.version = 3;
    g.bt[1] = f32::NAN;
    assert!(matches!(
        ad.apply_global(&g.to_bytes()),
        Err(PersonalizeError::NonFinite { .. })
    ));
    let mut bytes = {
        let mut g = GlobalAdapter::zero(&c);
        g.version = 3;
        g.to_bytes()
    };
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    assert!(matches!(
        ad.apply_global(&bytes),
        Err(PersonalizeError::Codec(CodecError::Checksum { .. }))
    ));
    assert!(
        snap(&ad) == before,
        "a rejected global update changed the adapter"
    );
}

#[test]
fn decision_needs_count_time_and_signal() {
    let c = cfg(16);
    let mut ad = adapter(&c);
    let mut rng = Rng::new(4);
    let out = feed(&mut ad, 5, 0, &mut rng);
    for (i, o) in out.iter().take(4).enumerate() {
        assert_eq!(
            o.decision,
            Decision::WaitingForInteractions {
                have: i as u64 + 1,
                need: 5
            }
        );
        assert!(!o.adapted);
    }
    assert!(out[4].adapted, "{:?}", out[4]);
    assert_eq!(ad.stats().adaptations, 1);
    assert_eq!(ad.stats().buffered, 0);
    // Five more within the hour: waits for time, keeps buffering.
    let out = feed(&mut ad, 5, 600, &mut rng);
    assert!(
        matches!(out[4].decision, Decision::WaitingForTime { remaining_secs } if remaining_secs == 3600 - (840 - 240))
    );
    assert_eq!(out[4].buffered, 5);
    // One more after the hour: adapts on all six.
    let out = feed(&mut ad, 1, 4_000, &mut rng);
    assert!(out[0].adapted);
    assert_eq!(ad.stats().adaptations, 2);
    assert_eq!(ad.stats().last_adaptation, Some(4_000));

    // Neutral signals (3-star ratings) count as interactions but carry no signal.
    let mut ad = adapter(&c);
    let q = vec![0.25f32; 16];
    let mut last = None;
    for i in 0..6 {
        last = Some(
            ad.update_from_interaction(
                &ViewerInteraction::new(InteractionKind::rating(3.0).unwrap(), "n"),
                i,
                Observation {
                    query: &q,
                    item: &q,
                },
                &[],
                &mut rng,
            )
            .unwrap(),
        );
    }
    assert!(matches!(
        last.unwrap().decision,
        Decision::WaitingForSignal { .. }
    ));
    assert_eq!(ad.stats().buffered, 0);
    assert_eq!(ad.stats().interaction_count, 6);

    // Only positives and no negative pool: thresholds met but no pairs.
    let mut ad = adapter(&c);
    let mut last = None;
    for i in 0..5 {
        last = Some(
            ad.update_from_interaction(
                &ViewerInteraction::new(InteractionKind::WatchComplete, "p"),
                i,
                Observation {
                    query: &q,
                    item: &q,
                },
                &[],
                &mut rng,
            )
            .unwrap(),
        );
    }
    assert_eq!(last.unwrap().decision, Decision::NoTrainingPairs);
    assert_eq!(ad.stats().buffered, 5);

    // Thresholds are configurable.
    let eager = PersonalizeConfig {
        min_interactions: 2,
        min_interval_secs: 0,
        min_signal: 0.0,
        ..cfg(16)
    };
    let mut ad = adapter(&eager);
    let out = feed(&mut ad, 4, 0, &mut rng);
    assert!(!out[0].adapted && out[1].adapted && !out[2].adapted && out[3].adapted);
}

#[test]
fn training_pairs_are_weighted_by_signal_strength() {
    // Nothing adapts on its own: all three interactions stay buffered.
    let c = PersonalizeConfig {
        min_interactions: 100,
        negatives_per_observation: 2,
        ..cfg(8)
    };
    let mut ad = adapter(&c);
    let mut rng = Rng::new(12);
    let q = unit(&mut rng, 8);
    let items: Vec<Vec<f32>> = (0..3).map(|_| unit(&mut rng, 8)).collect();
    let kinds = [
        InteractionKind::WatchComplete,
        InteractionKind::Rating { stars: 4.0 },
        InteractionKind::Skip,
    ];
    for (i, (kind, item)) in kinds.iter().zip(&items).enumerate() {
        let out = ad
            .update_from_interaction(
                &ViewerInteraction::new(*kind, format!("c{i}")),
                60 * i as i64,
                Observation { query: &q, item },
                &[],
                &mut rng,
            )
            .unwrap();
        assert!(!out.adapted);
    }
    let pool: Vec<f32> = (0..2).flat_map(|_| unit(&mut rng, 8)).collect();
    let set = ad.build_train_set(&pool, &mut rng);
    // Strengths 1 (complete), 0.8 · (4 − 3) / 2 = 0.4 (four stars), −0.6 (skip).
    // Each positive: the skip and 2 pool titles, its strength split over 3 pairs;
    // the skip: below 2 pool titles, 0.6 split over 2. Normalised by 1 + 0.4 + 0.6.
    let want = [
        1.0 / 3.0,
        1.0 / 3.0,
        1.0 / 3.0,
        0.4 / 3.0,
        0.4 / 3.0,
        0.4 / 3.0,
        0.3,
        0.3,
    ]
    .map(|w: f32| w / 2.0);
    assert_eq!(set.weights.len(), want.len());
    for (got, want) in set.weights.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{:?}", set.weights);
    }
    // One shared query, one group; the first pair is the completed title over the skip.
    assert_eq!(set.groups, [(0, 8)]);
    let first: Vec<f32> = items[0].iter().zip(&items[2]).map(|(p, s)| p - s).collect();
    assert!(set.diffs[..8]
        .iter()
        .zip(&first)
        .all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn both_factors_move_and_the_learning_rate_decays() {
    let c = cfg(16);
    let mut ad = adapter(&c);
    let (a0, b0) = ad.factors();
    assert!(b0.iter().all(|&x| x == 0.0) && a0.iter().any(|&x| x != 0.0));
    let mut rng = Rng::new(6);
    feed(&mut ad, 4, 0, &mut rng);
    // One Adam step: B moves, A cannot (∂L/∂A = 0 while B = 0).
    let set = ad.build_train_set(&[0.3f32; 16 * 3], &mut rng);
    let mut one = ad.clone();
    one.cfg.steps_per_adaptation = 1;
    one.learn(&set, 0.01);
    assert_eq!(one.factors().0, a0);
    assert!(one.factors().1.iter().any(|&x| x != 0.0));
    // A few steps: both move.
    let mut few = ad.clone();
    few.cfg.steps_per_adaptation = 3;
    let (before, after, _) = few.learn(&set, 0.01);
    assert!(few.factors().0.iter().zip(&a0).any(|(x, y)| x != y));
    assert!(after < before, "loss {before} -> {after}");
    // Learning rate follows the schedule.
    let mut ad = adapter(&PersonalizeConfig {
        max_interactions: 10,
        ..cfg(16)
    });
    let out = feed(&mut ad, 5, 0, &mut rng);
    assert_eq!(out[4].lr, Some(ad.config().base_lr * 0.5));
    let out = feed(&mut ad, 10, 10_000, &mut rng);
    assert_eq!(
        out.iter().rev().find_map(|o| o.lr),
        Some(ad.config().base_lr * ad.config().min_lr_fraction)
    );
}

#[test]
fn buffer_drops_the_oldest_beyond_max_pending() {
    let c = PersonalizeConfig {
        max_pending: 3,
        min_interactions: 100,
        ..cfg(16)
    };
    let mut ad = adapter(&c);
    let mut rng = Rng::new(1);
    feed(&mut ad, 7, 0, &mut rng);
    assert_eq!(ad.stats().buffered, 3);
    assert_eq!(ad.stats().pending_interactions, 7);
    let ids: Vec<&str> = ad
        .st
        .pending
        .iter()
        .map(|p| p.content_id.as_str())
        .collect();
    assert_eq!(ids, ["c4", "c5", "c6"]);
}

/// f64 reference of W' q with every d × d matrix materialized.
fn reference_adapt(ad: &Adapter, q: &[f32]) -> (Vec<f64>, f64) {
    let (d, r) = (ad.cfg.d, ad.cfg.rank);
    let c = ad.cfg.scale() as f64;
    let w: Vec<f64> = match &**ad.base() {
        BaseProjection::Identity { .. } => (0..d * d)
            .map(|i| if i / d == i % d { 1.0 } else { 0.0 })
            .collect(),
        BaseProjection::Dense(m) => m.values().iter().map(|&x| x as f64).collect(),
    };
    let prod = |a: &[f32], b: &[f32], i: usize, j: usize| -> f64 {
        (0..r)
            .map(|k| b[i * r + k] as f64 * a[k * d + j] as f64)
            .sum()
    };
    let mut out = vec![0f64; d];
    let mut base = vec![0f64; d];
    for i in 0..d {
        for j in 0..d {
            let wq = w[i * d + j] * q[j] as f64;
            let dw = c * prod(ad.global.a(), &ad.global.b(), i, j)
                + c * prod(&ad.factors().0, &ad.factors().1, i, j);
            base[i] += wq;
            out[i] += wq + dw * q[j] as f64;
        }
    }
    let dn: f64 = out
        .iter()
        .zip(&base)
        .map(|(o, b)| (o - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let bn: f64 = base.iter().map(|x| x * x).sum::<f64>().sqrt();
    (out, dn / bn)
}

#[test]
fn adapt_embeddings_matches_materialized_two_tier_product() {
    let d = 24;
    let c = cfg(d);
    let mut rng = Rng::new(12);
    let g = GlobalAdapter::from_factors(
        2,
        &c,
        (0..8 * d).map(|_| 0.2 * rng.normal()).collect(),
        (0..d * 8).map(|_| 0.2 * rng.normal()).collect(),
    )
    .unwrap();
    let w: Vec<f32> = (0..d * d)
        .map(|_| rng.normal() / (d as f32).sqrt())
        .collect();
    for base in [
        BaseProjection::identity(d),
        BaseProjection::dense(d, w).unwrap(),
    ] {
        let mut ad = load_adapter(None, "u", &c, Arc::new(base), Arc::new(g.clone())).unwrap();
        let q = unit(&mut rng, d);
        // Fresh user tier: only the global tier adapts.
        ad.st.b.iter_mut().for_each(|x| *x = 0.0);
        let (y0, m0) = adapt_embeddings(&ad, &q).unwrap();
        let (r0, rm0) = reference_adapt(&ad, &q);
        for (a, b) in y0.iter().zip(&r0) {
            assert!((*a as f64 - b).abs() < 1e-4);
        }
        assert!((m0 as f64 - rm0).abs() < 1e-4 * rm0.max(1.0));
        // Non-zero user tier.
        ad.st.b.iter_mut().for_each(|x| *x = 0.3 * rng.normal());
        let (y, m) = ad.adapt_embedding(&q).unwrap();
        let (r, rm) = reference_adapt(&ad, &q);
        for (a, b) in y.iter().zip(&r) {
            assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
        }
        assert!((m as f64 - rm).abs() < 1e-4 * rm.max(1.0), "{m} vs {rm}");
        assert!(m > m0);
    }
    // All tiers zero: output is W q, magnitude 0.
    let ad = adapter(&c);
    let q = unit(&mut rng, d);
    let (y, m) = ad.adapt_embedding(&q).unwrap();
    assert_eq!(y, q);
    assert_eq!(m, 0.0);
}

#[test]
fn stats_report_learning_state() {
    let c = cfg(16);
    let ad = adapter(&c);
    let s0 = ad.stats();
    assert_eq!(
        (
            s0.interaction_count,
            s0.adaptations,
            s0.update_norm,
            s0.fisher_mass
        ),
        (0, 0, 0.0, 0.0)
    );
    let ad = trained(&c);
    let s = ad.stats();
    assert_eq!(s.interaction_count, 7);
    assert_eq!(s.adaptations, 1);
    assert_eq!(s.pending_interactions, 2);
    assert_eq!(s.buffered, 2);
    assert_eq!(s.last_updated, Some(2_060));
    assert_eq!(s.last_adaptation, Some(1_240));
    assert!(s.update_norm > 0.0 && s.fisher_mass > 0.0 && s.fisher_updates == 1);
    assert!(s.last_loss.is_some());
}

#[test]
fn adapter_bytes_round_trip_in_f32_and_f16() {
    let c = cfg(16);
    let ad = trained(&c);
    let base = ad.base().clone();
    let g = ad.global().clone();
    let bytes = ad.to_bytes();
    let back = load_adapter(Some(&bytes), "viewer", &c, base.clone(), g.clone()).unwrap();
    // Lossless in f32 apart from the Fisher, which is stored separably.
    let (mut x, mut y) = (ad.st.clone(), back.st.clone());
    assert_eq!(x.a, y.a);
    assert_eq!(x.b, y.b);
    assert_eq!(x.pending, y.pending);
    x.ewc.fisher_a.clear();
    x.ewc.fisher_b.clear();
    y.ewc.fisher_a.clear();
    y.ewc.fisher_b.clear();
    assert_eq!(x, y);
    // One query embedding ⇒ rank-one Fisher ⇒ the separable form reloads it
    // up to 8-bit log quantization.
    let (fa, fb) = (&ad.st.ewc.fisher_a, &ad.st.ewc.fisher_b);
    let (ga, gb) = (&back.st.ewc.fisher_a, &back.st.ewc.fisher_b);
    let maxf = fa.iter().chain(fb.iter()).fold(0f32, |m, &v| m.max(v));
    for (u, v) in fa.iter().zip(ga).chain(fb.iter().zip(gb)) {
        assert!((u - v).abs() <= 0.06 * u.abs() + 1e-6 * maxf, "{u} vs {v}");
    }
    assert!((back.stats().fisher_mass / ad.stats().fisher_mass - 1.0).abs() < 0.05);
    // Full Fisher storage is exact in f32.
    let full = PersonalizeConfig {
        fisher_storage: FisherStorage::Full,
        ..c.clone()
    };
    let mut adf = ad.clone();
    adf.cfg = full.clone();
    let backf =
        Adapter::from_bytes(&adf.to_bytes(), "viewer", &full, base.clone(), g.clone()).unwrap();
    assert_eq!(backf.st, ad.st);
    // f16: close, and loadable by an f32-configured reader.
    let h = PersonalizeConfig {
        dtype: Dtype::F16,
        ..c.clone()
    };
    let mut adh = ad.clone();
    adh.cfg = h;
    let hb = adh.to_bytes();
    assert!(hb.len() < bytes.len());
    let backh = load_adapter(Some(&hb), "viewer", &c, base, g).unwrap();
    for (u, v) in ad
        .st
        .a
        .iter()
        .zip(&backh.st.a)
        .chain(ad.st.b.iter().zip(&backh.st.b))
    {
        assert!((u - v).abs() <= 1e-3 * u.abs() + 1e-7, "{u} vs {v}");
    }
    let q = vec![0.2f32; 16];
    let (y1, _) = ad.adapt_embedding(&q).unwrap();
    let (y2, _) = backh.adapt_embedding(&q).unwrap();
    for (u, v) in y1.iter().zip(&y2) {
        assert!((u - v).abs() < 1e-2 * (1.0 + u.abs()));
    }
}

#[test]
fn adapter_size_at_d384_rank8_fits_the_budget() {
    let mut sizes = Vec::new();
    for (dtype, storage, limit) in [
        (Dtype::F32, FisherStorage::Separable, Some(26_000usize)),
        (Dtype::F16, FisherStorage::Separable, Some(14_000)),
        (Dtype::F32, FisherStorage::Full, None),
        (Dtype::F16, FisherStorage::Full, None),
    ] {
        let c = PersonalizeConfig {
            dtype,
            fisher_storage: storage,
            ..Default::default()
        };
        assert_eq!((c.d, c.rank), (384, 8));
        let mut ad = load_adapter(
            None,
            "user-0123456789abcdef",
            &c,
            Arc::new(BaseProjection::identity(384)),
            Arc::new(GlobalAdapter::zero(&c)),
        )
        .unwrap();
        let mut rng = Rng::new(2);
        let out = feed(&mut ad, 5, 1_700_000_000, &mut rng);
        assert!(out[4].adapted);
        let st = ad.stats();
        assert!(st.fisher_mass > 0.0 && st.update_norm > 0.0 && st.buffered == 0);
        let n = ad.to_bytes().len();
        println!("adapter d=384 r=8 {dtype:?} fisher {storage:?}: {n} bytes");
        if let Some(l) = limit {
            assert!(n <= l, "{dtype:?}: {n} bytes > {l}");
        }
        sizes.push(n);
    }
    assert!(sizes[1] < sizes[0] && sizes[2] > sizes[0]);
}

#[test]
fn bad_adapter_bytes_are_clear_errors() {
    let c = cfg(16);
    let ad = trained(&c);
    let (base, g) = (ad.base().clone(), ad.global().clone());
    let bytes = ad.to_bytes();
    let load = |b: &[u8], user: &str, c: &PersonalizeConfig| {
        Adapter::from_bytes(b, user, c, base.clone(), g.clone())
    };
    assert!(load(&bytes, "viewer", &c).is_ok());
    // Truncated.
    for cut in [0, 3, 15, bytes.len() / 2, bytes.len() - 1] {
        let e = load(&bytes[..cut], "viewer", &c).unwrap_err();
        assert!(
            matches!(
                e,
                PersonalizeError::Codec(CodecError::TooShort { .. } | CodecError::Truncated { .. })
            ),
            "cut {cut}: {e}"
        );
    }
    // Corrupt.
    let mut x = bytes.clone();
    x[40] ^= 0x10;
    assert!(matches!(
        load(&x, "viewer", &c),
        Err(PersonalizeError::Codec(CodecError::Checksum { .. }))
    ));
    // Wrong version / magic.
    let mut v = bytes.clone();
    v[4] = 9;
    assert!(matches!(
        load(&v, "viewer", &c),
        Err(PersonalizeError::Codec(CodecError::UnsupportedVersion {
            found: 9,
            ..
        }))
    ));
    assert!(matches!(
        load(&GlobalAdapter::zero(&c).to_bytes(), "viewer", &c),
        Err(PersonalizeError::Codec(CodecError::BadMagic { .. }))
    ));
    // Wrong dimension / rank / user.
    let c32 = cfg(32);
    let e = Adapter::from_bytes(
        &bytes,
        "viewer",
        &c32,
        Arc::new(BaseProjection::identity(32)),
        Arc::new(GlobalAdapter::zero(&c32)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("stored adapter d"), "{e}");
    let c4 = PersonalizeConfig { rank: 4, ..cfg(16) };
    let e = Adapter::from_bytes(
        &bytes,
        "viewer",
        &c4,
        base.clone(),
        Arc::new(GlobalAdapter::zero(&c4)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("rank"), "{e}");
    assert!(matches!(
        load(&bytes, "someone-else", &c),
        Err(PersonalizeError::Mismatch {
            what: "stored adapter user id",
            ..
        })
    ));
    // A valid envelope around garbage.
    let junk = crate::codec::seal(
        format::ADAPTER_MAGIC,
        format::ADAPTER_FORMAT_VERSION,
        b"\x93\x01",
    );
    assert!(matches!(
        load(&junk, "viewer", &c),
        Err(PersonalizeError::Corrupt { .. })
    ));
    // Base / global of the wrong size.
    assert!(Adapter::from_bytes(
        &bytes,
        "viewer",
        &c,
        Arc::new(BaseProjection::identity(17)),
        g.clone()
    )
    .is_err());
}

#[test]
fn export_update_and_apply_global() {
    let c = cfg(16);
    let mut ad = trained(&c);
    let up = ad.export_update();
    assert_eq!(up.user_id, "viewer");
    assert_eq!(up.global_version, 0);
    assert_eq!(up.sample_count, 5);
    assert_eq!(up.scale, c.alpha / c.rank as f32);
    assert_eq!((up.a.len(), up.b.len()), (8 * 16, 16 * 8));
    let bytes = up.to_bytes();
    // Raw float blobs: about 4 tensors × 512 bytes plus a small header.
    assert!(bytes.len() < 4 * 512 + 300, "{} bytes", bytes.len());
    let back = AdapterUpdate::from_bytes(&bytes).unwrap();
    assert_eq!(back, up);
    let mut bad = up.clone();
    bad.b.pop();
    assert!(AdapterUpdate::from_bytes(&bad.to_bytes()).is_err());
    let mut bad = up.clone();
    bad.fisher_a[0] = -1.0;
    assert!(AdapterUpdate::from_bytes(&bad.to_bytes()).is_err());
    // A scale that is not alpha / rank, including the non-finite ones a plain
    // `difference > tolerance` test lets through.
    for scale in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2.0 * up.scale] {
        let mut bad = up.clone();
        bad.scale = scale;
        let e = AdapterUpdate::from_bytes(&bad.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("scale"), "{scale}: {e}");
    }

    // A new global tier changes W' q and resets the per-version sample count.
    let q = vec![0.25f32; 16];
    let (y0, _) = ad.adapt_embedding(&q).unwrap();
    let mut rng = Rng::new(7);
    let g = GlobalAdapter::from_factors(
        4,
        &c,
        (0..8 * 16).map(|_| 0.1 * rng.normal()).collect(),
        (0..16 * 8).map(|_| 0.1 * rng.normal()).collect(),
    )
    .unwrap();
    assert_eq!(ad.apply_global(&g.to_bytes()).unwrap(), 4);
    assert_eq!(**ad.global(), g);
    let (y1, _) = ad.adapt_embedding(&q).unwrap();
    assert!(y0.iter().zip(&y1).any(|(a, b)| (a - b).abs() > 1e-4));
    let s = ad.stats();
    assert_eq!((s.global_version, s.trained_samples), (4, 0));
    assert!(s.global_update_norm > 0.0);
    assert_eq!(ad.export_update().global_version, 4);
}

#[test]
fn adapt_pending_flushes_regardless_of_thresholds() {
    let c = cfg(16);
    let mut ad = adapter(&c);
    let mut rng = Rng::new(8);
    feed(&mut ad, 2, 0, &mut rng);
    assert_eq!(ad.stats().adaptations, 0);
    let before = snap(&ad);
    assert!(ad.adapt_pending(10, &[0.0; 17], &mut rng).is_err());
    assert!(snap(&ad) == before);
    let out = ad.adapt_pending(10, &[], &mut rng).unwrap();
    assert!(
        out.adapted,
        "one positive and one skip form a pair: {out:?}"
    );
    assert_eq!(ad.stats().adaptations, 1);
    assert_eq!(ad.stats().last_adaptation, Some(10));
    let out = ad.adapt_pending(11, &[], &mut rng).unwrap();
    assert_eq!(out.decision, Decision::NoTrainingPairs);
    assert_eq!(ad.stats().adaptations, 1);
}

#[test]
fn f16_decoding_matches_the_half_crate_for_every_bit_pattern() {
    for bits in 0..=u16::MAX {
        let ours = format::f16_bits_to_f32(bits);
        let theirs = half::f16::from_bits(bits).to_f32();
        if theirs.is_nan() {
            assert!(ours.is_nan(), "{bits:#06x}");
        } else {
            assert_eq!(
                ours.to_bits(),
                theirs.to_bits(),
                "{bits:#06x}: {ours} vs {theirs}"
            );
        }
    }
    // Saturating encode: out-of-range values stay finite.
    let b = format::encode_tensor(&[1e6, -1e6, 1.5], Dtype::F16);
    let v = format::decode_tensor(&b, Dtype::F16, 3, "t").unwrap();
    assert_eq!(v, vec![65504.0, -65504.0, 1.5]);
}

#[test]
fn mutated_payloads_never_panic_and_loaded_adapters_are_usable() {
    let c = cfg(16);
    let ad = trained(&c);
    let (base, g) = (ad.base().clone(), ad.global().clone());
    let bytes = ad.to_bytes();
    let payload = crate::codec::open(
        "t",
        format::ADAPTER_MAGIC,
        format::ADAPTER_FORMAT_VERSION,
        &bytes,
    )
    .unwrap()
    .to_vec();
    let mut rng = Rng::new(77);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..1500 {
        let mut p = payload.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(p.len());
            p[i] = rng.next_u64() as u8;
        }
        if rng.chance(0.2) {
            p.truncate(rng.below(p.len()));
        }
        // Re-seal so the checksum passes and the decoder/validators are exercised.
        let sealed = crate::codec::seal(format::ADAPTER_MAGIC, format::ADAPTER_FORMAT_VERSION, &p);
        match Adapter::from_bytes(&sealed, "viewer", &c, base.clone(), g.clone()) {
            Ok(mut a) => {
                ok += 1;
                let (y, m) = a.adapt_embedding(&[0.1; 16]).unwrap();
                assert!(y.iter().all(|x| x.is_finite()) && m.is_finite());
                let _ = a.stats();
                let _ = a.adapt_pending(i64::MAX, &[0.3; 32], &mut rng);
                let _ = a.to_bytes();
            }
            Err(_) => err += 1,
        }
    }
    assert!(err > 0 && ok > 0, "ok {ok} err {err}");
}

#[test]
fn extreme_times_do_not_overflow() {
    let c = cfg(16);
    let mut ad = adapter(&c);
    let mut rng = Rng::new(1);
    feed(&mut ad, 5, i64::MAX - 1000, &mut rng);
    assert_eq!(ad.stats().adaptations, 1);
    let out = feed(&mut ad, 5, i64::MIN, &mut rng);
    assert!(matches!(
        out[4].decision,
        Decision::WaitingForTime { remaining_secs } if remaining_secs > 0
    ));
}

#[test]
fn a_diverging_adaptation_is_rolled_back() {
    let c = cfg(16);
    let mut ad = adapter(&c);
    let mut rng = Rng::new(2);
    feed(&mut ad, 2, 0, &mut rng);
    // Weights no learning could produce (bypassing validation): scores overflow.
    ad.st.a.iter_mut().for_each(|x| *x = 1e25);
    ad.st.b.iter_mut().for_each(|x| *x = 1e25);
    let before = snap(&ad);
    let out = ad.adapt_pending(5, &[0.1; 32], &mut rng).unwrap();
    assert_eq!(out.decision, Decision::Diverged);
    assert!(!out.adapted);
    assert!(snap(&ad) == before);
}

#[test]
fn adapted_projection_is_linear_in_the_query() {
    // W' is a matrix: W'(αx + βy) = αW'x + βW'y, for both base kinds.
    let d = 20;
    let c = cfg(d);
    let mut rng = Rng::new(31);
    let w: Vec<f32> = (0..d * d).map(|_| rng.normal() / 4.0).collect();
    for base in [
        BaseProjection::identity(d),
        BaseProjection::dense(d, w.clone()).unwrap(),
    ] {
        let g = GlobalAdapter::from_factors(
            1,
            &c,
            (0..8 * d).map(|_| 0.3 * rng.normal()).collect(),
            (0..d * 8).map(|_| 0.3 * rng.normal()).collect(),
        )
        .unwrap();
        let mut ad = Adapter::new("lin", &c, Arc::new(base), Arc::new(g)).unwrap();
        ad.st.b.iter_mut().for_each(|x| *x = 0.3 * rng.normal());
        for _ in 0..10 {
            let x = unit(&mut rng, d);
            let y = unit(&mut rng, d);
            let (al, be) = (rng.normal(), rng.normal());
            let z: Vec<f32> = x.iter().zip(&y).map(|(a, b)| al * a + be * b).collect();
            let (wx, _) = ad.adapt_embedding(&x).unwrap();
            let (wy, _) = ad.adapt_embedding(&y).unwrap();
            let (wz, _) = ad.adapt_embedding(&z).unwrap();
            for i in 0..d {
                let e = al * wx[i] + be * wy[i];
                assert!(
                    (wz[i] - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{} vs {e}",
                    wz[i]
                );
            }
        }
    }
}

#[test]
fn global_adapter_bytes_round_trip() {
    let c = cfg(16);
    let mut rng = Rng::new(5);
    let g = GlobalAdapter::from_factors(
        9,
        &c,
        (0..8 * 16).map(|_| rng.normal()).collect(),
        (0..16 * 8).map(|_| rng.normal()).collect(),
    )
    .unwrap();
    let back = GlobalAdapter::from_bytes(&g.to_bytes(), &c).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.version(), 9);
    // B is exposed in the d × r layout it was given in.
    let b = g.b();
    let g2 = GlobalAdapter::from_factors(9, &c, g.a().to_vec(), b).unwrap();
    assert_eq!(g2, g);
    assert!(matches!(
        GlobalAdapter::from_bytes(
            &g.to_bytes(),
            &PersonalizeConfig {
                alpha: 8.0,
                ..cfg(16)
            }
        ),
        Err(PersonalizeError::Mismatch { .. })
    ));
}

#[test]
fn max_update_norm_bounds_the_personal_update() {
    let capped = PersonalizeConfig {
        max_update_norm: Some(0.5),
        ..cfg(16)
    };
    let free = cfg(16);
    let (mut a, mut b) = (adapter(&capped), adapter(&free));
    for t in 0..4 {
        feed(&mut a, 5, t * 10_000, &mut Rng::new(t as u64));
        feed(&mut b, 5, t * 10_000, &mut Rng::new(t as u64));
    }
    let (na, nb) = (a.stats().update_norm, b.stats().update_norm);
    assert_eq!(a.stats().adaptations, 4);
    assert!(nb > 0.5, "unconstrained norm {nb}");
    assert!(na <= 0.5 * (1.0 + 1e-4), "capped norm {na}");
    // The capped adapter still moved (B ≠ 0) and its anchor is its current state.
    assert!(na > 0.1);
    assert_eq!(a.st.ewc.anchor_b, a.st.b);
    assert!(PersonalizeConfig {
        max_update_norm: Some(0.0),
        ..cfg(16)
    }
    .validate()
    .is_err());
}
