//! Keeping the bank small and true: usage decay, pruning, merging, and global
//! aggregation of many viewers' patterns into segment and universal patterns.
//!
//! [`ReasoningBank::maintain`] runs, in this order:
//! 1. **Decay**: a pattern unused for `k` whole `decay_after_secs` periods
//!    (7 days) has had its usage multiplied (floored) by `usage_decay_factor`
//!    `k` times. Steps already applied are remembered, so running maintenance
//!    twice in one week does not decay twice; using the pattern resets it.
//! 2. **Prune**: patterns with confidence < `prune_below` (0.3) are removed.
//! 3. **Merge**: patterns with cosine similarity > `merge_above` (0.95), the
//!    same owner, the same segment and matching contexts are merged into the one
//!    with the highest usage (ties: higher confidence, then older id). The
//!    survivor keeps its embedding and context; it gets the union of results,
//!    the usage-weighted mean confidence (weights `max(usage, 1)`), the summed
//!    usage, the earliest `created_at` and the latest `last_used`.
//! 4. **Compact** when tombstones exceed `rebuild_tombstone_fraction`.
//!
//! [`ReasoningBank::aggregate_global`] clusters viewers' own patterns (the up to
//! `aggregate_max_cluster` unclustered patterns with cosine ≥
//! `aggregate_similarity` to a seed; seeds by decreasing usage) and, per
//! cluster, with U = the distinct users who have a pattern in it ("users who
//! had a similar query"):
//! - a **universal** pattern (no user, no segment) holding the results that
//!   more than `universal_min_fraction` (80%) of U had among their successful
//!   results, when |U| ≥ `universal_min_users`;
//! - one **segment** pattern per segment `s` holding the results that at least
//!   `segment_min_fraction` of the cluster's users in `s` had, when at least
//!   `segment_min_users` users of `s` are in the cluster.
//!
//! Aggregated patterns take the normalized mean embedding of their members, the
//! context fields all members agree on, the members' mean confidence and summed
//! usage. Each run replaces the previous run's aggregated patterns.

use super::pattern::PatternRecord;
use super::{hnsw::dot, PatternContext, PatternId, ReasoningBank, ResultId};
use std::collections::{BTreeMap, BTreeSet};

/// What [`ReasoningBank::maintain`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MaintenanceReport {
    /// Patterns whose usage decayed.
    pub decayed: Vec<PatternId>,
    pub pruned: Vec<PatternId>,
    /// (survivor, absorbed) pairs.
    pub merged: Vec<(PatternId, PatternId)>,
    pub compacted: bool,
}

/// What [`ReasoningBank::aggregate_global`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AggregationReport {
    pub clusters: usize,
    pub segment_patterns: Vec<PatternId>,
    pub universal_patterns: Vec<PatternId>,
    /// Aggregated patterns of the previous run that were replaced.
    pub replaced: usize,
}

/// Candidates looked at per pattern when merging.
const NEIGHBOURS: usize = 64;

impl ReasoningBank {
    /// Decay, prune, merge and compact at time `now` (see the module docs).
    pub fn maintain(&mut self, now: i64) -> MaintenanceReport {
        let mut rep = MaintenanceReport::default();
        let period = self.config.decay_after_secs;
        let factor = self.config.usage_decay_factor;
        for r in self.slots.iter_mut().flatten() {
            let idle = now.saturating_sub(r.last_used);
            let steps = (idle / period).clamp(0, u16::MAX as i64) as u16;
            if steps > r.decay_steps {
                for _ in r.decay_steps..steps {
                    r.usage_count = (r.usage_count as f32 * factor).floor() as u32;
                }
                self.counters.usage_decays += (steps - r.decay_steps) as u64;
                r.decay_steps = steps;
                rep.decayed.push(r.id);
            }
        }

        let prune: Vec<PatternId> = self
            .slots
            .iter()
            .flatten()
            .filter(|r| r.confidence < self.config.prune_below)
            .map(|r| r.id)
            .collect();
        for &id in &prune {
            self.tombstone(id);
        }
        self.counters.patterns_pruned += prune.len() as u64;
        rep.pruned = prune;

        rep.merged = self.merge_near_duplicates();
        self.counters.patterns_merged += rep.merged.len() as u64;

        let before = self.slots.len();
        self.maybe_compact();
        rep.compacted = self.slots.len() != before;
        rep
    }

    fn merge_near_duplicates(&mut self) -> Vec<(PatternId, PatternId)> {
        let mut order: Vec<(u32, f32, PatternId, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref()
                    .map(|r| (r.usage_count, r.confidence, r.id, i as u32))
            })
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut merged = Vec::new();
        let d = self.config.dim;
        for (_, _, id, slot) in order {
            let Some(base) = self.slots[slot as usize].clone() else {
                continue; // absorbed earlier
            };
            let q = self.vectors[slot as usize * d..(slot as usize + 1) * d].to_vec();
            let accept = |s: u32| {
                s != slot
                    && self.slots[s as usize].as_ref().is_some_and(|r| {
                        r.user == base.user
                            && r.segment == base.segment
                            && r.aggregated == base.aggregated
                            && self.config.context.matches(&r.context, &base.context)
                    })
            };
            let near = self.nearest_by(&q, NEIGHBOURS, &accept).0;
            let absorb: Vec<u32> = near
                .into_iter()
                .filter(|&(sim, _)| sim > self.config.merge_above)
                .map(|(_, s)| s)
                .collect();
            if absorb.is_empty() {
                continue;
            }
            let cap = self.config.max_results_per_pattern;
            let mut acc = base;
            for s in absorb {
                let other = self.slots[s as usize]
                    .clone()
                    .expect("accepted slot is live");
                let (wa, wb) = (
                    acc.usage_count.max(1) as f32,
                    other.usage_count.max(1) as f32,
                );
                acc.confidence =
                    ((acc.confidence * wa + other.confidence * wb) / (wa + wb)).clamp(0.0, 1.0);
                acc.usage_count = acc.usage_count.saturating_add(other.usage_count);
                acc.created_at = acc.created_at.min(other.created_at);
                if other.last_used > acc.last_used {
                    acc.last_used = other.last_used;
                    acc.decay_steps = other.decay_steps;
                }
                let mut res = std::mem::take(&mut acc.results).into_vec();
                res.extend_from_slice(&other.results);
                acc.results = super::clean_results(res, cap);
                merged.push((id, other.id));
                self.tombstone(other.id);
            }
            self.slots[slot as usize] = Some(acc);
        }
        merged
    }

    /// Build segment and universal patterns from viewers' own patterns at time
    /// `now`, replacing the previous aggregation (see the module docs).
    pub fn aggregate_global(&mut self, now: i64) -> AggregationReport {
        let d = self.config.dim;
        let mut rep = AggregationReport::default();
        let old: Vec<PatternId> = self
            .slots
            .iter()
            .flatten()
            .filter(|r| r.aggregated)
            .map(|r| r.id)
            .collect();
        rep.replaced = old.len();
        for id in old {
            self.tombstone(id);
        }

        let mut seeds: Vec<(u32, PatternId, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref()
                    .filter(|r| r.user.is_some())
                    .map(|r| (r.usage_count, r.id, i as u32))
            })
            .collect();
        seeds.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut taken = vec![false; self.slots.len()];
        let mut new_patterns: Vec<(PatternRecord, Vec<f32>, bool)> = Vec::new();
        for (_, _, seed) in seeds {
            if taken[seed as usize] {
                continue;
            }
            let q = self.vectors[seed as usize * d..(seed as usize + 1) * d].to_vec();
            let accept = |s: u32| {
                !taken[s as usize]
                    && self.slots[s as usize]
                        .as_ref()
                        .is_some_and(|r| r.user.is_some())
            };
            let mut members: Vec<u32> = self
                .nearest_by(&q, self.config.aggregate_max_cluster, &accept)
                .0
                .into_iter()
                .filter(|&(sim, _)| sim >= self.config.aggregate_similarity)
                .map(|(_, s)| s)
                .collect();
            if !members.contains(&seed) {
                members.push(seed);
            }
            for &m in &members {
                taken[m as usize] = true;
            }
            rep.clusters += 1;
            let recs: Vec<&PatternRecord> = members
                .iter()
                .map(|&s| self.slots[s as usize].as_ref().expect("live member"))
                .collect();

            // Universal: over every user of the cluster.
            if let Some(results) =
                self.supported_results(&recs, self.config.universal_min_users, |n, u| {
                    n as f32 / u as f32 > self.config.universal_min_fraction
                })
            {
                let (rec, v) = self.aggregate_record(&members, results, None, now);
                new_patterns.push((rec, v, true));
            }
            // Segment patterns.
            let segments: BTreeSet<u32> = recs.iter().filter_map(|r| r.segment).collect();
            for s in segments {
                let in_seg: Vec<u32> = members
                    .iter()
                    .copied()
                    .filter(|&m| self.slots[m as usize].as_ref().expect("live").segment == Some(s))
                    .collect();
                let seg_recs: Vec<&PatternRecord> = in_seg
                    .iter()
                    .map(|&m| self.slots[m as usize].as_ref().expect("live"))
                    .collect();
                if let Some(results) =
                    self.supported_results(&seg_recs, self.config.segment_min_users, |n, u| {
                        n as f32 / u as f32 >= self.config.segment_min_fraction
                    })
                {
                    let (rec, v) = self.aggregate_record(&in_seg, results, Some(s), now);
                    new_patterns.push((rec, v, false));
                }
            }
        }
        for (mut rec, v, universal) in new_patterns {
            rec.id = self.next_id;
            self.next_id += 1;
            if universal {
                rep.universal_patterns.push(rec.id);
            } else {
                rep.segment_patterns.push(rec.id);
            }
            self.insert_record(rec, &v);
        }
        self.maybe_compact();
        rep
    }

    /// Results whose user support passes `keep(users_with_result, users)`, most
    /// supported first; `None` with fewer than `min_users` users or no result.
    fn supported_results(
        &self,
        recs: &[&PatternRecord],
        min_users: usize,
        keep: impl Fn(usize, usize) -> bool,
    ) -> Option<Vec<ResultId>> {
        let users: BTreeSet<u64> = recs.iter().filter_map(|r| r.user).collect();
        if users.len() < min_users.max(1) {
            return None;
        }
        let mut support: BTreeMap<ResultId, BTreeSet<u64>> = BTreeMap::new();
        for r in recs {
            if let Some(u) = r.user {
                for &x in &r.results {
                    support.entry(x).or_default().insert(u);
                }
            }
        }
        let mut kept: Vec<(usize, ResultId)> = support
            .into_iter()
            .map(|(x, us)| (us.len(), x))
            .filter(|&(n, _)| keep(n, users.len()))
            .collect();
        kept.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let out: Vec<ResultId> = kept
            .into_iter()
            .map(|(_, x)| x)
            .take(self.config.max_results_per_pattern)
            .collect();
        (!out.is_empty()).then_some(out)
    }

    fn aggregate_record(
        &self,
        members: &[u32],
        results: Vec<ResultId>,
        segment: Option<u32>,
        now: i64,
    ) -> (PatternRecord, Vec<f32>) {
        let d = self.config.dim;
        let mut mean = vec![0.0f32; d];
        let recs: Vec<&PatternRecord> = members
            .iter()
            .map(|&s| self.slots[s as usize].as_ref().expect("live"))
            .collect();
        for &s in members {
            for (a, b) in mean
                .iter_mut()
                .zip(&self.vectors[s as usize * d..(s as usize + 1) * d])
            {
                *a += b;
            }
        }
        let n = dot(&mean, &mean).sqrt();
        if n > 0.0 && n.is_finite() {
            mean.iter_mut().for_each(|x| *x /= n);
        } else {
            mean.copy_from_slice(
                &self.vectors[members[0] as usize * d..(members[0] as usize + 1) * d],
            );
        }
        let first = recs[0].context;
        let agree = |f: &dyn Fn(&PatternContext) -> bool| recs.iter().all(|r| f(&r.context));
        let context = PatternContext {
            time_of_day: first
                .time_of_day
                .filter(|&t| agree(&|c| c.time_of_day == Some(t))),
            day_of_week: first
                .day_of_week
                .filter(|&t| agree(&|c| c.day_of_week == Some(t))),
            device: first.device.filter(|&t| agree(&|c| c.device == Some(t))),
            session_minutes: None,
            moods: recs.iter().fold(first.moods, |m, r| {
                super::MoodSet::from_bits(m.bits() & r.context.moods.bits())
            }),
        };
        let rec = PatternRecord {
            id: 0,
            results: results.into_boxed_slice(),
            user: None,
            segment,
            context,
            confidence: recs.iter().map(|r| r.confidence).sum::<f32>() / recs.len() as f32,
            usage_count: recs
                .iter()
                .fold(0u32, |a, r| a.saturating_add(r.usage_count)),
            created_at: now,
            last_used: now,
            decay_steps: 0,
            aggregated: true,
        };
        (rec, mean)
    }
}
