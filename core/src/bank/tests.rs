//! Tests of the bank's rules: spec thresholds, boost numbers, search filters,
//! learning loop, maintenance, aggregation, persistence and validation.

use super::*;
use crate::rng::Rng;

const D: usize = 16;
const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn cfg() -> BankConfig {
    BankConfig::with_dim(D)
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn random_unit(rng: &mut Rng, d: usize) -> Vec<f32> {
    unit(&(0..d).map(|_| rng.normal()).collect::<Vec<_>>())
}

/// A unit vector with cosine exactly `s` to unit `base`.
fn at_cosine(base: &[f32], s: f32, rng: &mut Rng) -> Vec<f32> {
    let r = random_unit(rng, base.len());
    let p = dot(&r, base);
    let w = unit(
        &r.iter()
            .zip(base)
            .map(|(x, b)| x - p * b)
            .collect::<Vec<_>>(),
    );
    let c = (1.0 - s * s).max(0.0).sqrt();
    base.iter().zip(&w).map(|(b, x)| s * b + c * x).collect()
}

fn tv_evening() -> PatternContext {
    PatternContext {
        time_of_day: Some(TimeOfDay::Evening),
        day_of_week: Some(DayOfWeek::Friday),
        device: Some(DeviceType::Tv),
        session_minutes: Some(30.0),
        moods: MoodSet::of(&[Mood::Relaxed]),
    }
}

fn mobile_morning() -> PatternContext {
    PatternContext {
        time_of_day: Some(TimeOfDay::Morning),
        device: Some(DeviceType::Mobile),
        ..tv_evening()
    }
}

fn new_pattern(e: Vec<f32>, results: &[u64], conf: f32, usage: u32) -> NewPattern {
    NewPattern {
        query_embedding: e,
        successful_results: results.to_vec(),
        user: None,
        segment: None,
        context: tv_evening(),
        confidence: conf,
        usage_count: usage,
    }
}

#[test]
fn defaults_are_the_spec_values() {
    let c = BankConfig::default();
    assert_eq!(c.dim, 384);
    assert_eq!(c.min_similarity, 0.7);
    assert_eq!(c.overfetch_factor, 2);
    assert_eq!(c.boost_usage_divisor, 10.0);
    assert_eq!(c.min_positive_results, 3);
    assert_eq!(c.watch_positive_fraction, 0.5);
    assert_eq!(c.prune_below, 0.3);
    assert_eq!(c.merge_above, 0.95);
    assert_eq!(c.decay_after_secs, 7 * DAY);
    assert_eq!(c.universal_min_fraction, 0.8);
    assert_eq!(c.match_rate_target, 0.35);
    assert_eq!(c.exact_scan_below, 2_000);
    assert!(ReasoningBank::new(c).is_ok());
    let bad = BankConfig {
        prune_below: 1.5,
        ..cfg()
    };
    assert!(matches!(
        ReasoningBank::new(bad),
        Err(BankError::InvalidConfig(_))
    ));
}

fn matched(id: u64, conf: f32, usage: u32, results: &[u64]) -> MatchedPattern {
    MatchedPattern {
        id,
        similarity: 0.9,
        confidence: conf,
        usage_count: usage,
        successful_results: results.to_vec(),
        user: None,
        segment: None,
        context: PatternContext::default(),
        aggregated: false,
    }
}

#[test]
fn boost_formula_exact_numbers_and_usage_zero_guard() {
    let bank = ReasoningBank::new(cfg()).unwrap();
    // 0.92 · (1 + log2(8) / 10) = 0.92 · 1.3 = 1.196
    assert!((bank.boost_of(0.92, 8) - 1.196).abs() < 1e-6);
    // usage 1 → log2(1) = 0 → boost = confidence
    assert!((bank.boost_of(0.92, 1) - 0.92).abs() < 1e-7);
    // usage 0 would be log2(0) = −inf: guarded, counts as usage 1.
    assert_eq!(bank.boost_of(0.92, 0), bank.boost_of(0.92, 1));
    assert!(bank.boost_of(0.5, 0).is_finite());
    // 0.5 · (1 + log2(1024) / 10) = 0.5 · 2 = 1.0
    assert!((bank.boost_of(0.5, 1024) - 1.0).abs() < 1e-6);

    let cands = [
        Candidate { id: 1, score: 2.0 },
        Candidate { id: 2, score: 3.0 },
    ];
    let out = bank
        .apply_patterns(&cands, &[matched(7, 0.92, 8, &[1])])
        .unwrap();
    // 2.0 · (1 + 1.196) = 4.392 now ranks above 3.0.
    assert_eq!(out[0].id, 1);
    assert!((out[0].score - 4.392).abs() < 1e-5);
    assert_eq!(out[0].original_score, 2.0);
    assert_eq!(out[0].pattern, Some(7));
    assert_eq!(
        out[0].explanation.as_deref(),
        Some("Matches successful pattern (confidence: 92%)")
    );
    assert_eq!(out[1].id, 2);
    assert_eq!(out[1].score, 3.0);
    assert_eq!(out[1].boost, 0.0);
    assert_eq!(out[1].explanation, None);
}

#[test]
fn several_matching_patterns_give_the_strongest_boost_not_the_sum() {
    let bank = ReasoningBank::new(cfg()).unwrap();
    let pats = [
        matched(1, 0.5, 1, &[10, 11]),
        matched(2, 0.8, 4, &[10]),
        matched(3, 0.9, 0, &[11]),
    ];
    let out = bank
        .apply_patterns(
            &[
                Candidate { id: 10, score: 1.0 },
                Candidate { id: 11, score: 1.0 },
                Candidate { id: 12, score: 1.0 },
            ],
            &pats,
        )
        .unwrap();
    let by = |id| out.iter().find(|c| c.id == id).unwrap();
    // 10: max(0.5, 0.8 · 1.2 = 0.96) = 0.96 from pattern 2.
    assert!((by(10).boost - 0.96).abs() < 1e-6);
    assert_eq!(by(10).pattern, Some(2));
    assert!((by(10).score - 1.96).abs() < 1e-6);
    // 11: max(0.5, 0.9) = 0.9 from pattern 3 (usage 0 guarded).
    assert!((by(11).boost - 0.9).abs() < 1e-6);
    assert_eq!(by(11).pattern, Some(3));
    assert_eq!(by(12).boost, 0.0);
    assert_eq!(out.iter().map(|c| c.id).collect::<Vec<_>>(), [10, 11, 12]);
    // Bad input is refused.
    assert!(bank
        .apply_patterns(
            &[Candidate {
                id: 1,
                score: f32::NAN
            }],
            &pats
        )
        .is_err());
    assert!(bank
        .apply_patterns(&[Candidate { id: 1, score: -1.0 }], &pats)
        .is_err());
}

#[test]
fn store_get_and_normalization() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(1);
    let e: Vec<f32> = random_unit(&mut rng, D).iter().map(|x| x * 3.0).collect();
    let id = bank
        .store_pattern(new_pattern(e.clone(), &[5, 6, 5], 0.8, 2), T0)
        .unwrap();
    let p = bank.get(id).unwrap();
    assert_eq!(p.successful_results, vec![5, 6]);
    assert_eq!(p.confidence, 0.8);
    assert_eq!(p.usage_count, 2);
    assert_eq!((p.created_at, p.last_used), (T0, T0));
    assert_eq!(p.context, tv_evening());
    let n: f32 = p.query_embedding.iter().map(|x| x * x).sum();
    assert!((n - 1.0).abs() < 1e-5);
    assert!((dot(&p.query_embedding, &unit(&e)) - 1.0).abs() < 1e-5);
    assert_eq!(bank.len(), 1);
    assert_eq!(bank.ids(), vec![id]);
}

#[test]
fn similarity_floor_and_context_filter() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(2);
    let q = random_unit(&mut rng, D);
    let hi = bank
        .store_pattern(new_pattern(at_cosine(&q, 0.71, &mut rng), &[1], 0.9, 1), T0)
        .unwrap();
    let _lo = bank
        .store_pattern(new_pattern(at_cosine(&q, 0.69, &mut rng), &[2], 0.9, 1), T0)
        .unwrap();
    let mut m = new_pattern(at_cosine(&q, 0.99, &mut rng), &[3], 0.9, 1);
    m.context = mobile_morning();
    let mobile = bank.store_pattern(m, T0).unwrap();

    let r = bank
        .find_similar_patterns(&q, &tv_evening(), 5, 0.7)
        .unwrap();
    assert_eq!(r.matches.iter().map(|m| m.id).collect::<Vec<_>>(), [hi]);
    assert!((r.matches[0].similarity - 0.71).abs() < 1e-4);
    assert_eq!(r.rejected_by_context, 1);
    assert_eq!(r.total_patterns_searched, 3);
    assert!(!r.used_index);
    // The mobile pattern matches a mobile-morning query, best first.
    let r = bank
        .find_similar_patterns(&q, &mobile_morning(), 5, 0.7)
        .unwrap();
    assert_eq!(r.matches[0].id, mobile);
    // An unknown context matches everything above the floor.
    let r = bank
        .find_similar_patterns(&q, &PatternContext::default(), 5, 0.7)
        .unwrap();
    assert_eq!(r.matches.len(), 2);
    let r = bank
        .find_similar_patterns(&q, &PatternContext::default(), 5, 0.6)
        .unwrap();
    assert_eq!(r.matches.len(), 3);
}

#[test]
fn search_over_fetches_exactly_twice_the_limit_before_context_filtering() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(3);
    let q = random_unit(&mut rng, D);
    // Ranks 1–4 (most similar) are mobile patterns, rank 5 is a TV pattern.
    for s in [0.99, 0.98, 0.97, 0.96] {
        let mut p = new_pattern(at_cosine(&q, s, &mut rng), &[1], 0.9, 1);
        p.context = mobile_morning();
        bank.store_pattern(p, T0).unwrap();
    }
    let tv = bank
        .store_pattern(new_pattern(at_cosine(&q, 0.95, &mut rng), &[2], 0.9, 1), T0)
        .unwrap();
    // limit 2 → fetch 4 → all four are mobile → nothing.
    let r = bank
        .find_similar_patterns(&q, &tv_evening(), 2, 0.7)
        .unwrap();
    assert_eq!(r.fetched, 4);
    assert_eq!(r.rejected_by_context, 4);
    assert!(r.matches.is_empty());
    // limit 3 → fetch 6 → the TV pattern at rank 5 is reached.
    let r = bank
        .find_similar_patterns(&q, &tv_evening(), 3, 0.7)
        .unwrap();
    assert_eq!(r.fetched, 5);
    assert_eq!(r.matches.iter().map(|m| m.id).collect::<Vec<_>>(), [tv]);
    // A factor-1 bank would not reach it even with limit 4.
    let mut c1 = cfg();
    c1.overfetch_factor = 1;
    let mut b1 = ReasoningBank::from_bytes(&bank.to_bytes()).unwrap();
    b1.config = c1;
    let r = b1.find_similar_patterns(&q, &tv_evening(), 4, 0.7).unwrap();
    assert!(r.matches.is_empty());
}

fn snapshot(bank: &ReasoningBank) -> Vec<u8> {
    bank.to_bytes()
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(4);
    let e = random_unit(&mut rng, D);
    let id = bank
        .store_pattern(new_pattern(e.clone(), &[1, 2], 0.7, 1), T0)
        .unwrap();
    let before = snapshot(&bank);

    let short = vec![1.0; D - 1];
    assert_eq!(
        bank.store_pattern(new_pattern(short.clone(), &[1], 0.5, 1), T0),
        Err(BankError::WrongDimension {
            expected: D,
            found: D - 1
        })
    );
    let mut nan = e.clone();
    nan[3] = f32::NAN;
    assert!(matches!(
        bank.store_pattern(new_pattern(nan.clone(), &[1], 0.5, 1), T0),
        Err(BankError::NonFinite { index: 3, .. })
    ));
    let mut inf = e.clone();
    inf[0] = f32::INFINITY;
    assert!(matches!(
        bank.store_pattern(new_pattern(inf, &[1], 0.5, 1), T0),
        Err(BankError::NonFinite { index: 0, .. })
    ));
    assert_eq!(
        bank.store_pattern(new_pattern(vec![0.0; D], &[1], 0.5, 1), T0),
        Err(BankError::ZeroVector)
    );
    assert!(matches!(
        bank.store_pattern(new_pattern(e.clone(), &[1], 1.5, 1), T0),
        Err(BankError::OutOfRange { .. })
    ));
    assert_eq!(
        bank.store_pattern(new_pattern(e.clone(), &[], 0.5, 1), T0),
        Err(BankError::NoResults)
    );
    let mut bad_ctx = new_pattern(e.clone(), &[1], 0.5, 1);
    bad_ctx.context.session_minutes = Some(f32::NAN);
    assert!(bank.store_pattern(bad_ctx, T0).is_err());
    assert_eq!(bank.get(999), Err(BankError::UnknownPattern(999)));
    assert_eq!(
        bank.remove_pattern(999).unwrap_err(),
        BankError::UnknownPattern(999)
    );
    assert!(bank
        .find_similar_patterns(&short, &tv_evening(), 3, 0.7)
        .is_err());
    assert!(bank
        .find_similar_patterns(&nan, &tv_evening(), 3, 0.7)
        .is_err());
    assert!(bank
        .find_similar_patterns(&e, &tv_evening(), 3, f32::NAN)
        .is_err());
    // Absurd limits are fine (clamped to the bank size), not an allocation panic.
    let r = bank
        .find_similar_patterns(&e, &tv_evening(), usize::MAX, 0.0)
        .unwrap();
    assert_eq!(r.matches.len(), 1);
    assert_eq!(bank.index_top_k(&e, usize::MAX).unwrap(), vec![id]);
    let fb = QueryFeedback {
        query_embedding: e.clone(),
        context: tv_evening(),
        user: None,
        segment: None,
        signals: vec![
            (1, Signal::Click),
            (2, Signal::Click),
            (3, Signal::Click),
            (4, Signal::Watch { fraction: 1.5 }),
        ],
    };
    assert!(bank.learn(&fb, T0).is_err());
    let fb = QueryFeedback {
        query_embedding: short,
        ..fb
    };
    assert!(bank.learn(&fb, T0).is_err());
    // Corrupt files are refused; the existing bank is untouched.
    let mut corrupt = before.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x10;
    assert!(matches!(
        ReasoningBank::from_bytes(&corrupt),
        Err(BankError::Codec(crate::codec::CodecError::Checksum { .. }))
    ));
    assert!(ReasoningBank::from_bytes(&before[..before.len() - 3]).is_err());

    assert_eq!(snapshot(&bank), before, "a refused call changed the bank");
    assert_eq!(bank.get(id).unwrap().successful_results, vec![1, 2]);
}

#[test]
fn persistence_round_trip_exact_and_indexed_and_raw_embeddings() {
    for indexed in [false, true] {
        let mut c = cfg();
        c.exact_scan_below = if indexed { 50 } else { 10_000 };
        let mut bank = ReasoningBank::new(c).unwrap();
        let mut rng = Rng::new(5);
        for i in 0..200u64 {
            let mut p = new_pattern(random_unit(&mut rng, D), &[i, i + 1], 0.6, i as u32 % 5);
            p.user = Some(i % 7);
            p.segment = Some((i % 3) as u32);
            bank.store_pattern(p, T0 + i as i64).unwrap();
        }
        bank.remove_pattern(17).unwrap();
        assert_eq!(bank.is_indexed(), indexed);
        let bytes = bank.to_bytes();
        // Embeddings travel as 4 raw bytes per value.
        assert!(bytes.len() > 200 * D * 4);
        let graph = if indexed { 200 * (1 + 32 * 4 + 16) } else { 0 };
        assert!(
            bytes.len() < 200 * D * 4 + 200 * 60 + graph + 2_000,
            "{} bytes",
            bytes.len()
        );
        let back = ReasoningBank::from_bytes(&bytes).unwrap();
        assert_eq!(back.patterns(), bank.patterns());
        assert_eq!(back.is_indexed(), indexed);
        assert_eq!(back.stats().counters, bank.stats().counters);
        for _ in 0..20 {
            let q = random_unit(&mut rng, D);
            let a = bank.find_similar_patterns(&q, &PatternContext::default(), 5, -1.0);
            let b = back.find_similar_patterns(&q, &PatternContext::default(), 5, -1.0);
            assert_eq!(a, b);
        }
        assert_eq!(back.to_bytes(), bytes);
        // A valid envelope around a bad payload is a clear error too.
        let junk = crate::codec::seal(
            persist::BANK_MAGIC,
            persist::BANK_FORMAT_VERSION,
            &[1, 2, 3],
        );
        assert!(matches!(
            ReasoningBank::from_bytes(&junk),
            Err(BankError::Corrupt(_))
        ));
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(matches!(
            ReasoningBank::from_bytes(&other),
            Err(BankError::Codec(crate::codec::CodecError::BadMagic { .. }))
        ));
    }
}

#[test]
fn corrupt_payload_fields_are_caught_after_the_checksum() {
    // Re-seal tampered payloads (valid CRC) so the field checks themselves run.
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(6);
    for i in 0..5u64 {
        bank.store_pattern(new_pattern(random_unit(&mut rng, D), &[i], 0.6, 1), T0)
            .unwrap();
    }
    let bytes = bank.to_bytes();
    let payload = crate::codec::open(
        "t",
        persist::BANK_MAGIC,
        persist::BANK_FORMAT_VERSION,
        &bytes,
    )
    .unwrap()
    .to_vec();
    let meta_len = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
    let rec_at = 4 + meta_len;
    let rec_len = u64::from_le_bytes(payload[rec_at..rec_at + 8].try_into().unwrap()) as usize;
    let emb_at = rec_at + 8 + rec_len + 8;
    let reseal =
        |p: &[u8]| crate::codec::seal(persist::BANK_MAGIC, persist::BANK_FORMAT_VERSION, p);
    // A NaN embedding value.
    let mut p = payload.clone();
    p[emb_at..emb_at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(matches!(
        ReasoningBank::from_bytes(&reseal(&p)),
        Err(BankError::Corrupt(_))
    ));
    // Trailing bytes.
    let mut p = payload.clone();
    p.push(0);
    assert!(matches!(
        ReasoningBank::from_bytes(&reseal(&p)),
        Err(BankError::Corrupt(_))
    ));
    // Missing graph flag.
    let p = &payload[..payload.len() - 1];
    assert!(matches!(
        ReasoningBank::from_bytes(&reseal(p)),
        Err(BankError::Corrupt(_))
    ));
    assert!(ReasoningBank::from_bytes(&reseal(&payload)).is_ok());
}

#[test]
fn index_recall_tombstones_and_compaction() {
    let d = 24;
    let mut c = BankConfig::with_dim(d);
    c.exact_scan_below = 300;
    c.hnsw.ef_construction = 64;
    c.hnsw.ef_search = 64;
    let mut bank = ReasoningBank::new(c).unwrap();
    let mut rng = Rng::new(7);
    let mut ids = Vec::new();
    for i in 0..1200u64 {
        ids.push(
            bank.store_pattern(new_pattern(random_unit(&mut rng, d), &[i], 0.6, 1), T0)
                .unwrap(),
        );
        assert_eq!(bank.is_indexed(), bank.len() >= 300);
    }
    let recall = |bank: &ReasoningBank, rng: &mut Rng| {
        let (mut hit, mut tot) = (0, 0);
        for _ in 0..40 {
            let q = random_unit(rng, d);
            let truth = bank.exact_top_k(&q, 10).unwrap();
            let got = bank.index_top_k(&q, 10).unwrap();
            hit += got.iter().filter(|x| truth.contains(x)).count();
            tot += truth.len();
        }
        hit as f64 / tot as f64
    };
    let r = recall(&bank, &mut rng);
    assert!(r >= 0.9, "recall@10 = {r}");
    // Remove every 5th pattern (20% < 25%: tombstones, no compaction yet).
    let removed: Vec<u64> = ids.iter().copied().step_by(5).collect();
    for &id in &removed {
        bank.remove_pattern(id).unwrap();
    }
    let st = bank.stats();
    assert_eq!(st.tombstones, removed.len());
    assert_eq!(st.counters.rebuilds, 1);
    for _ in 0..30 {
        let q = random_unit(&mut rng, d);
        let got = bank.index_top_k(&q, 10).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|id| !removed.contains(id)));
    }
    assert!(recall(&bank, &mut rng) >= 0.9);
    // Each live pattern finds itself first.
    for &id in ids.iter().filter(|id| !removed.contains(id)).take(50) {
        let e = bank.get(id).unwrap().query_embedding;
        assert_eq!(bank.index_top_k(&e, 1).unwrap(), vec![id]);
    }
    // Push tombstones past 25% (301 of 1200): compaction rebuilds the graph.
    let more: Vec<u64> = ids.iter().copied().skip(1).step_by(5).take(61).collect();
    for &id in &more {
        bank.remove_pattern(id).unwrap();
    }
    let st = bank.stats();
    assert_eq!(st.tombstones, 0);
    assert_eq!(st.counters.rebuilds, 2);
    assert_eq!(bank.len(), 1200 - removed.len() - more.len());
    assert!(recall(&bank, &mut rng) >= 0.9);
    for id in removed.iter().chain(&more) {
        assert_eq!(bank.get(*id), Err(BankError::UnknownPattern(*id)));
    }
}

fn feedback(e: &[f32], ctx: PatternContext, signals: &[(u64, Signal)]) -> QueryFeedback {
    QueryFeedback {
        query_embedding: e.to_vec(),
        context: ctx,
        user: None,
        segment: None,
        signals: signals.to_vec(),
    }
}

#[test]
fn watch_over_half_counts_skip_loses_to_positive() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(8);
    let e = random_unit(&mut rng, D);
    // 0.5 is not "more than 50%": only two positives → no pattern.
    let out = bank
        .learn(
            &feedback(
                &e,
                tv_evening(),
                &[
                    (1, Signal::Click),
                    (2, Signal::Completion),
                    (3, Signal::Watch { fraction: 0.5 }),
                ],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(out.positives, vec![1, 2]);
    assert_eq!(out.created, None);
    assert!(bank.is_empty());
    // 0.51 is; a skip of a clicked result does not count as a skip.
    let out = bank
        .learn(
            &feedback(
                &e,
                tv_evening(),
                &[
                    (1, Signal::Skip),
                    (1, Signal::Click),
                    (2, Signal::Completion),
                    (3, Signal::Watch { fraction: 0.51 }),
                    (4, Signal::Skip),
                ],
            ),
            T0,
        )
        .unwrap();
    assert_eq!(out.positives, vec![1, 2, 3]);
    assert_eq!(out.skipped, vec![4]);
    let id = out.created.expect("three positives create a pattern");
    let p = bank.get(id).unwrap();
    assert_eq!(p.successful_results, vec![1, 2, 3]);
    assert_eq!(p.confidence, 0.6);
    assert_eq!(p.usage_count, 1);
}

/// A scripted viewing session: queries, clicks and skips at injected times.
#[test]
fn learning_loop_scripted_session() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(9);
    let comedy = random_unit(&mut rng, D);
    let docs = at_cosine(&comedy, 0.0, &mut rng);
    let h = 3600;

    // 1. Friday evening on the TV: "light comedy" → three titles watched.
    let out = bank
        .learn(
            &feedback(
                &comedy,
                tv_evening(),
                &[
                    (101, Signal::Click),
                    (102, Signal::Watch { fraction: 0.8 }),
                    (103, Signal::Completion),
                    (104, Signal::Skip),
                ],
            ),
            T0,
        )
        .unwrap();
    assert!(out.matched.is_empty());
    let p = out.created.expect("pattern created");
    assert_eq!(bank.stats().match_rate, 0.0);

    // 2. A paraphrase an hour later matches it; one positive reinforces it.
    let para = at_cosine(&comedy, 0.93, &mut rng);
    let out = bank
        .learn(
            &feedback(
                &para,
                tv_evening(),
                &[(101, Signal::Click), (150, Signal::Watch { fraction: 0.2 })],
            ),
            T0 + h,
        )
        .unwrap();
    assert_eq!(out.matched, vec![p]);
    assert_eq!(out.reinforced, vec![p]);
    assert_eq!(out.created, None);
    let pat = bank.get(p).unwrap();
    assert!((pat.confidence - 0.64).abs() < 1e-6); // 0.6 + 0.1 · 0.4
    assert_eq!(pat.usage_count, 2);
    assert_eq!(pat.last_used, T0 + h);
    assert_eq!(bank.stats().match_rate, 0.5);

    // 3. The pattern now boosts its results for a new similar query.
    let found = bank
        .find_similar_patterns(&para, &tv_evening(), 5, 0.7)
        .unwrap();
    assert_eq!(found.matches.len(), 1);
    let cands = [
        Candidate {
            id: 900,
            score: 0.6,
        },
        Candidate {
            id: 101,
            score: 0.5,
        },
    ];
    let ranked = bank.apply_patterns(&cands, &found.matches).unwrap();
    // 0.64 · (1 + log2(2)/10) = 0.704 → 0.5 · 1.704 = 0.852 > 0.6.
    assert_eq!(ranked[0].id, 101);
    assert!((ranked[0].score - 0.852).abs() < 1e-5);
    assert_eq!(
        ranked[0].explanation.as_deref(),
        Some("Matches successful pattern (confidence: 64%)")
    );

    // 4. The same query on the phone in the morning does not match it.
    let out = bank
        .learn(
            &feedback(&comedy, mobile_morning(), &[(101, Signal::Click)]),
            T0 + 2 * h,
        )
        .unwrap();
    assert!(out.matched.is_empty());
    assert!(out.reinforced.is_empty());

    // 5. Three new positives on a near-identical query: the existing pattern
    //    absorbs them (union), no new pattern.
    let close = at_cosine(&comedy, 0.97, &mut rng);
    let out = bank
        .learn(
            &feedback(
                &close,
                tv_evening(),
                &[
                    (105, Signal::Click),
                    (106, Signal::Click),
                    (101, Signal::Completion),
                ],
            ),
            T0 + 3 * h,
        )
        .unwrap();
    assert_eq!(out.created, None);
    assert_eq!(out.reinforced, vec![p]);
    let pat = bank.get(p).unwrap();
    assert_eq!(pat.successful_results, vec![101, 102, 103, 105, 106]);
    assert_eq!(pat.usage_count, 3);
    assert_eq!(bank.len(), 1);

    // 6. A different intent creates its own pattern.
    let out = bank
        .learn(
            &feedback(
                &docs,
                tv_evening(),
                &[
                    (201, Signal::Completion),
                    (202, Signal::Completion),
                    (203, Signal::Click),
                ],
            ),
            T0 + 4 * h,
        )
        .unwrap();
    let q = out.created.expect("second pattern");
    assert_eq!(bank.len(), 2);

    // 7. The viewer starts skipping the comedy picks: each skip weakens it.
    let mut conf = bank.get(p).unwrap().confidence;
    for k in 0..5 {
        let out = bank
            .learn(
                &feedback(&comedy, tv_evening(), &[(102, Signal::Skip)]),
                T0 + (5 + k) * h,
            )
            .unwrap();
        assert_eq!(out.weakened, vec![p]);
        let now = bank.get(p).unwrap().confidence;
        assert!((conf - now - 0.1).abs() < 1e-6);
        conf = now;
    }
    assert!(conf < 0.3, "confidence {conf}");
    // Skips of results a pattern does not hold leave it alone.
    let out = bank
        .learn(
            &feedback(&docs, tv_evening(), &[(999, Signal::Skip)]),
            T0 + 11 * h,
        )
        .unwrap();
    assert!(out.weakened.is_empty());

    // 8. Maintenance prunes the weakened pattern and keeps the other.
    let rep = bank.maintain(T0 + 12 * h);
    assert_eq!(rep.pruned, vec![p]);
    assert_eq!(bank.ids(), vec![q]);
    assert!(bank
        .find_similar_patterns(&comedy, &tv_evening(), 5, 0.7)
        .unwrap()
        .matches
        .is_empty());
    let st = bank.stats();
    assert_eq!(st.counters.patterns_created, 2);
    assert_eq!(st.counters.patterns_pruned, 1);
    // Steps 1, 2, 4, 5, 6, 7 (×5), 7b.
    assert_eq!(st.counters.queries_seen, 11);
    // Matched: steps 2, 5, 7 (×5), and the docs skip query in 7b.
    assert_eq!(st.counters.queries_matched, 8);
    assert!((st.match_rate - 8.0 / 11.0).abs() < 1e-12);
    assert_eq!(st.match_rate_target, 0.35);
}

#[test]
fn usage_decays_once_per_idle_week() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(10);
    let e = random_unit(&mut rng, D);
    let id = bank
        .store_pattern(new_pattern(e.clone(), &[1, 2, 3], 0.9, 8), T0)
        .unwrap();
    let usage = |b: &ReasoningBank| b.get(id).unwrap().usage_count;
    assert!(bank.maintain(T0 + 7 * DAY - 1).decayed.is_empty());
    assert_eq!(usage(&bank), 8);
    assert_eq!(bank.maintain(T0 + 7 * DAY).decayed, vec![id]);
    assert_eq!(usage(&bank), 4);
    bank.maintain(T0 + 8 * DAY);
    assert_eq!(usage(&bank), 4, "decayed twice in one week");
    // Two more weeks at once: two steps.
    bank.maintain(T0 + 21 * DAY);
    assert_eq!(usage(&bank), 1);
    // Using it resets the clock.
    bank.learn(
        &feedback(&e, tv_evening(), &[(1, Signal::Click)]),
        T0 + 22 * DAY,
    )
    .unwrap();
    assert_eq!(usage(&bank), 2);
    bank.maintain(T0 + 28 * DAY);
    assert_eq!(usage(&bank), 2);
    bank.maintain(T0 + 29 * DAY);
    assert_eq!(usage(&bank), 1);
    assert_eq!(bank.stats().counters.usage_decays, 4);
}

#[test]
fn usage_decay_floors_odd_counts() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(17);
    let id = bank
        .store_pattern(new_pattern(random_unit(&mut rng, D), &[1], 0.9, 7), T0)
        .unwrap();
    let usage = |b: &ReasoningBank| b.get(id).unwrap().usage_count;
    // ⌊7 · 0.5⌋ = 3, ⌊3 · 0.5⌋ = 1, ⌊1 · 0.5⌋ = 0 (rounding would give 4, 2, 1).
    bank.maintain(T0 + 7 * DAY);
    assert_eq!(usage(&bank), 3);
    bank.maintain(T0 + 14 * DAY);
    assert_eq!(usage(&bank), 1);
    bank.maintain(T0 + 21 * DAY);
    assert_eq!(usage(&bank), 0);
}

#[test]
fn prune_threshold_is_strictly_below_point_three() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(11);
    let keep = bank
        .store_pattern(new_pattern(random_unit(&mut rng, D), &[1], 0.3, 1), T0)
        .unwrap();
    let drop = bank
        .store_pattern(new_pattern(random_unit(&mut rng, D), &[2], 0.29, 1), T0)
        .unwrap();
    let rep = bank.maintain(T0);
    assert_eq!(rep.pruned, vec![drop]);
    assert_eq!(bank.ids(), vec![keep]);
}

#[test]
fn merge_near_duplicates_union_weighted_confidence_summed_usage() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(12);
    let e = random_unit(&mut rng, D);
    let a = bank
        .store_pattern(new_pattern(e.clone(), &[1, 2], 0.9, 3), T0)
        .unwrap();
    let b = bank
        .store_pattern(
            new_pattern(at_cosine(&e, 0.96, &mut rng), &[2, 3], 0.5, 1),
            T0 - DAY,
        )
        .unwrap();
    // 0.94: not a duplicate.
    let c = bank
        .store_pattern(new_pattern(at_cosine(&e, 0.94, &mut rng), &[4], 0.5, 1), T0)
        .unwrap();
    // Same embedding, other viewer: kept apart.
    let mut other = new_pattern(at_cosine(&e, 0.99, &mut rng), &[5], 0.5, 1);
    other.user = Some(42);
    let d = bank.store_pattern(other, T0).unwrap();
    // Same embedding, other device: kept apart.
    let mut phone = new_pattern(at_cosine(&e, 0.99, &mut rng), &[6], 0.5, 1);
    phone.context = mobile_morning();
    let f = bank.store_pattern(phone, T0).unwrap();

    let rep = bank.maintain(T0 + 1);
    assert_eq!(rep.merged, vec![(a, b)]);
    assert_eq!(bank.ids(), vec![a, c, d, f]);
    let m = bank.get(a).unwrap();
    assert_eq!(m.successful_results, vec![1, 2, 3]);
    // (0.9 · 3 + 0.5 · 1) / 4 = 0.8
    assert!((m.confidence - 0.8).abs() < 1e-6);
    assert_eq!(m.usage_count, 4);
    assert_eq!(m.created_at, T0 - DAY);
    assert!(
        dot(&m.query_embedding, &e) > 0.99999,
        "survivor keeps its embedding"
    );
    // The survivor was used more recently than the absorbed pattern: it keeps T0.
    assert_eq!(m.last_used, T0);
    assert_eq!(bank.get(b), Err(BankError::UnknownPattern(b)));
    assert_eq!(bank.stats().counters.patterns_merged, 1);

    // An absorbed pattern used more recently than the survivor lends its time.
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let old = bank
        .store_pattern(new_pattern(e.clone(), &[1], 0.9, 5), T0)
        .unwrap();
    let recent = bank
        .store_pattern(
            new_pattern(at_cosine(&e, 0.99, &mut rng), &[2], 0.5, 1),
            T0 + 3 * DAY,
        )
        .unwrap();
    let rep = bank.maintain(T0 + 3 * DAY);
    assert_eq!(rep.merged, vec![(old, recent)]);
    let m = bank.get(old).unwrap();
    assert_eq!((m.created_at, m.last_used), (T0, T0 + 3 * DAY));
    // (0.9 · 5 + 0.5 · 1) / 6
    assert!((m.confidence - 5.0 / 6.0).abs() < 1e-6);
}

#[test]
fn merge_needs_similarity_above_the_threshold_not_at_it() {
    // Exact binary coordinates: the cosine of `e` and `at` is exactly 0.5.
    let mut e = vec![0.0f32; D];
    e[..4].copy_from_slice(&[0.5; 4]);
    let mut at = e.clone();
    at[3] = -0.5;
    assert_eq!(dot(&e, &at), 0.5);
    let mut rng = Rng::new(21);
    let just_above = at_cosine(&e, 0.501, &mut rng);
    let c = BankConfig {
        merge_above: 0.5,
        ..cfg()
    };
    for (other, merges) in [(at, false), (just_above, true)] {
        let mut bank = ReasoningBank::new(c.clone()).unwrap();
        let a = bank
            .store_pattern(new_pattern(e.clone(), &[1], 0.9, 3), T0)
            .unwrap();
        let b = bank
            .store_pattern(new_pattern(other, &[2], 0.9, 1), T0)
            .unwrap();
        let rep = bank.maintain(T0 + 1);
        if merges {
            assert_eq!(rep.merged, vec![(a, b)]);
        } else {
            assert!(rep.merged.is_empty(), "{:?}", rep.merged);
            assert_eq!(bank.ids(), vec![a, b]);
        }
    }
}

#[test]
fn a_segment_pattern_keeps_results_half_its_viewers_had() {
    // Four viewers of one segment (the fewest allowed is 3): a result two of them
    // had (exactly 50 %) is kept, one that one of them had (25 %) is not.
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(22);
    let e = random_unit(&mut rng, D);
    for u in 0..4u64 {
        let mut results = vec![100];
        if u < 2 {
            results.push(400);
        }
        if u == 0 {
            results.push(401);
        }
        let mut p = new_pattern(at_cosine(&e, 0.97, &mut rng), &results, 0.8, 1);
        p.user = Some(u);
        p.segment = Some(3);
        bank.store_pattern(p, T0).unwrap();
    }
    let rep = bank.aggregate_global(T0 + DAY);
    // Four viewers are too few for a universal pattern (5).
    assert!(rep.universal_patterns.is_empty());
    assert_eq!(rep.segment_patterns.len(), 1);
    let seg = bank.get(rep.segment_patterns[0]).unwrap();
    assert_eq!(seg.segment, Some(3));
    assert_eq!(seg.successful_results, vec![100, 400]);
}

#[test]
fn global_aggregation_builds_universal_and_segment_patterns() {
    let mut bank = ReasoningBank::new(cfg()).unwrap();
    let mut rng = Rng::new(13);
    let e = random_unit(&mut rng, D);
    // Ten viewers with a similar query; segment 1 = users 0–4, segment 2 = 5–9.
    for u in 0..10u64 {
        let mut results = vec![100];
        if u < 9 {
            results.push(101); // 9/10 = 90% > 80% → universal
        }
        if u < 8 {
            results.push(102); // 8/10 = 80%, not more → not universal
        }
        if u < 5 {
            results.push(200); // all of segment 1
        }
        if u == 5 {
            results.push(300); // 1 of 5 in segment 2 → below 50%
        }
        // Confidences 0.6, 0.64, …, 0.96: the aggregates take the members' mean.
        let conf = 0.6 + 0.04 * u as f32;
        let mut p = new_pattern(at_cosine(&e, 0.97, &mut rng), &results, conf, 2);
        p.user = Some(u);
        p.segment = Some(if u < 5 { 1 } else { 2 });
        bank.store_pattern(p, T0).unwrap();
    }
    // An unrelated viewer's pattern is its own cluster (too few users).
    let mut lone = new_pattern(at_cosine(&e, 0.0, &mut rng), &[7], 0.8, 2);
    lone.user = Some(77);
    lone.segment = Some(1);
    bank.store_pattern(lone, T0).unwrap();

    let rep = bank.aggregate_global(T0 + DAY);
    assert_eq!(rep.clusters, 2);
    assert_eq!(rep.universal_patterns.len(), 1);
    assert_eq!(rep.segment_patterns.len(), 2);
    let uni = bank.get(rep.universal_patterns[0]).unwrap();
    assert_eq!(uni.successful_results, vec![100, 101]);
    assert_eq!((uni.user, uni.segment, uni.aggregated), (None, None, true));
    assert_eq!(uni.usage_count, 20);
    // Mean of 0.6 + 0.04 u over u = 0..9: 0.6 + 0.04 · 4.5 = 0.78.
    assert!((uni.confidence - 0.78).abs() < 1e-5, "{}", uni.confidence);
    assert!(dot(&uni.query_embedding, &e) > 0.95);
    // Context fields all members agree on (session lengths are not kept).
    assert_eq!(
        uni.context,
        PatternContext {
            session_minutes: None,
            ..tv_evening()
        }
    );
    let segs: Vec<Pattern> = rep
        .segment_patterns
        .iter()
        .map(|&id| bank.get(id).unwrap())
        .collect();
    let s1 = segs.iter().find(|p| p.segment == Some(1)).unwrap();
    let s2 = segs.iter().find(|p| p.segment == Some(2)).unwrap();
    assert_eq!(s1.successful_results, vec![100, 101, 102, 200]);
    assert_eq!(s2.successful_results, vec![100, 101, 102]);
    // Segment 1 = users 0–4: 0.6 + 0.04 · 2 = 0.68; segment 2 = users 5–9: 0.88.
    assert!((s1.confidence - 0.68).abs() < 1e-5, "{}", s1.confidence);
    assert!((s2.confidence - 0.88).abs() < 1e-5, "{}", s2.confidence);
    assert_eq!((s1.usage_count, s2.usage_count), (10, 10));

    // A new viewer of segment 1 sees their own + segment 1 + universal patterns.
    let mut own = new_pattern(at_cosine(&e, 0.98, &mut rng), &[555], 0.8, 1);
    own.user = Some(500);
    own.segment = Some(1);
    let own = bank.store_pattern(own, T0 + DAY).unwrap();
    let found = bank
        .find_similar_scoped(
            &e,
            &tv_evening(),
            10,
            0.7,
            Scope::User {
                user: 500,
                segment: Some(1),
            },
        )
        .unwrap();
    let mut ids: Vec<u64> = found.matches.iter().map(|m| m.id).collect();
    ids.sort();
    let mut want = vec![own, uni.id, s1.id];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(found.total_patterns_searched, bank.len());

    // Running it again replaces the aggregated patterns.
    let again = bank.aggregate_global(T0 + 2 * DAY);
    assert_eq!(again.replaced, 3);
    assert_eq!(again.universal_patterns.len(), 1);
    assert_eq!(bank.len(), 11 + 1 + 3);
}

#[test]
fn heap_bytes_per_pattern_at_d384_is_under_two_kilobytes() {
    let mut c = BankConfig::default();
    c.hnsw.ef_construction = 16;
    c.exact_scan_below = 500;
    let mut bank = ReasoningBank::new(c).unwrap();
    let mut rng = Rng::new(14);
    for i in 0..600u64 {
        bank.store_pattern(
            new_pattern(
                random_unit(&mut rng, 384),
                &[i, i + 1, i + 2, i + 3, i + 4],
                0.6,
                1,
            ),
            T0,
        )
        .unwrap();
    }
    assert!(bank.is_indexed());
    let per = bank.approx_heap_bytes() as f64 / bank.len() as f64;
    assert!(per > 1536.0, "{per} bytes: the embedding alone is 1536");
    assert!(per <= 2048.0, "{per} bytes per pattern");
}

#[test]
fn maintenance_on_an_indexed_bank_keeps_the_graph_consistent() {
    let mut c = cfg();
    c.exact_scan_below = 50;
    let mut bank = ReasoningBank::new(c).unwrap();
    let mut rng = Rng::new(15);
    let mut pairs = Vec::new();
    let mut weak = Vec::new();
    for i in 0..150u64 {
        let e = random_unit(&mut rng, D);
        let a = bank
            .store_pattern(new_pattern(e.clone(), &[i], 0.8, 5), T0)
            .unwrap();
        if i % 3 == 0 {
            let b = bank
                .store_pattern(
                    new_pattern(at_cosine(&e, 0.99, &mut rng), &[1000 + i], 0.6, 1),
                    T0,
                )
                .unwrap();
            pairs.push((a, b));
        } else if i % 3 == 1 {
            weak.push(
                bank.store_pattern(
                    new_pattern(random_unit(&mut rng, D), &[2000 + i], 0.1, 1),
                    T0,
                )
                .unwrap(),
            );
        }
    }
    assert!(bank.is_indexed());
    let rep = bank.maintain(T0 + 1);
    let mut pruned = rep.pruned.clone();
    pruned.sort();
    assert_eq!(pruned, weak);
    let mut merged = rep.merged.clone();
    merged.sort();
    assert_eq!(merged, pairs);
    assert_eq!(bank.len(), 150);
    let gone: Vec<u64> = weak
        .iter()
        .chain(pairs.iter().map(|p| &p.1))
        .copied()
        .collect();
    for (a, b) in &pairs {
        let p = bank.get(*a).unwrap();
        assert_eq!(p.successful_results.len(), 2);
        assert_eq!(bank.index_top_k(&p.query_embedding, 1).unwrap(), vec![*a]);
        assert!(bank.get(*b).is_err());
    }
    for _ in 0..30 {
        let q = random_unit(&mut rng, D);
        let got = bank.index_top_k(&q, 20).unwrap();
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|id| !gone.contains(id)));
    }
}

#[test]
fn per_viewer_search_in_a_large_shared_bank_scans_only_that_viewer() {
    let mut c = cfg();
    c.exact_scan_below = 100;
    let mut bank = ReasoningBank::new(c).unwrap();
    let mut rng = Rng::new(16);
    for i in 0..600u64 {
        let mut p = new_pattern(random_unit(&mut rng, D), &[i], 0.7, 1);
        p.user = Some(i % 30);
        p.context = PatternContext::default();
        bank.store_pattern(p, T0).unwrap();
    }
    assert!(bank.is_indexed());
    bank.remove_pattern(31).unwrap(); // a tombstone of user 1
    for user in [1u64, 7] {
        let q = random_unit(&mut rng, D);
        let scope = Scope::User {
            user,
            segment: None,
        };
        let r = bank
            .find_similar_scoped(&q, &PatternContext::default(), 5, -1.0, scope)
            .unwrap();
        assert!(r.matches.iter().all(|m| m.user == Some(user)));
        let mut truth: Vec<(f32, u64)> = bank
            .patterns()
            .into_iter()
            .filter(|p| p.user == Some(user))
            .map(|p| (dot(&q, &p.query_embedding), p.id))
            .collect();
        truth.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<u64> = truth.iter().take(5).map(|t| t.1).collect();
        assert_eq!(r.matches.iter().map(|m| m.id).collect::<Vec<_>>(), want);
        assert_eq!(r.similarity_evaluations, truth.len());
        assert_eq!(r.total_patterns_searched, 599);
    }
}

#[test]
fn many_viewers_with_the_same_query_are_all_found_and_persisted() {
    // 40 queries, each sent by 60 viewers (identical embeddings), and 600 other
    // patterns: an indexed bank must still return the identical ones first.
    let mut c = cfg();
    c.exact_scan_below = 100;
    let mut bank = ReasoningBank::new(c).unwrap();
    let mut rng = Rng::new(21);
    let queries: Vec<Vec<f32>> = (0..40).map(|_| random_unit(&mut rng, D)).collect();
    let mut order: Vec<Option<usize>> = (0..40 * 60).map(|i| Some(i % 40)).collect();
    order.extend(std::iter::repeat_n(None, 600));
    rng.shuffle(&mut order);
    for (i, q) in order.iter().enumerate() {
        let e = match q {
            Some(j) => queries[*j].clone(),
            None => random_unit(&mut rng, D),
        };
        let mut p = new_pattern(e, &[i as u64], 0.6, 1);
        p.user = Some(i as u64);
        bank.store_pattern(p, T0 + i as i64).unwrap();
    }
    assert!(bank.is_indexed());
    let bytes = bank.to_bytes();
    let back = ReasoningBank::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    for (j, q) in queries.iter().enumerate() {
        for b in [&bank, &back] {
            let found = b
                .find_similar_patterns(q, &PatternContext::default(), 60, 0.99)
                .unwrap();
            assert_eq!(found.matches.len(), 60, "query {j}");
        }
    }
}
