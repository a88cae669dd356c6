//! ReasoningBank: a memory of query patterns that worked, searchable on the
//! device (exact scan) and at scale (our own HNSW graph, see [`hnsw`]).
//!
//! A [`Pattern`] is a unit-normalized query embedding, the results that were
//! successful for it, its owner / user segment, the viewing context, a
//! confidence in `[0, 1]`, a usage count and two timestamps. All times are
//! injected (`now`, unix seconds); all thresholds are in [`BankConfig`], whose
//! `Default` holds the spec values.
//!
//! - **Search** ([`ReasoningBank::find_similar_patterns`]): cosine search that
//!   over-fetches `overfetch_factor × limit` nearest patterns, drops those under
//!   `min_similarity`, keeps those whose context matches
//!   ([`ContextMatchConfig::matches`]) and returns the best `limit`.
//!   `total_patterns_searched` is the number of live patterns the search ran
//!   over (the bank size), as in the proto; the number of similarity
//!   evaluations it actually computed is reported beside it.
//! - **Boost** ([`ReasoningBank::apply_patterns`]): a candidate in a pattern's
//!   successful results gets `score × (1 + boost)`,
//!   `boost = confidence · (1 + log2(max(usage_count, 1)) / 10)`; usage 0 counts
//!   as 1 (boost = confidence). When several patterns contain a candidate the
//!   **strongest** boost applies (no stacking: near-duplicate patterns would
//!   otherwise multiply one signal).
//! - **Learning** ([`ReasoningBank::learn`], rules in [`learning`]),
//!   **maintenance** ([`ReasoningBank::maintain`],
//!   [`ReasoningBank::aggregate_global`], rules in [`maintenance`]) and
//!   **persistence** ([`ReasoningBank::to_bytes`], [`ReasoningBank::from_bytes`],
//!   format in [`persist`]).
//! - **Scope**: one bank can serve one viewer (on the device: [`Scope::All`])
//!   or many ([`Scope::User`]: the viewer's own patterns, their segment's
//!   aggregated patterns and universal ones). Per-viewer searches scan the
//!   viewer's and the aggregated patterns exactly (a side index of slots), so a
//!   viewer with 100 patterns in a bank of a million costs 100 similarities.
//!
//! # Index
//! Below `exact_scan_below` live patterns the bank scans every vector; from
//! there on it builds an HNSW graph over the same `f32` arena (no second copy)
//! and inserts into it incrementally. Removed patterns become tombstones that
//! searches walk through but never return; once they exceed
//! `rebuild_tombstone_fraction` of the slots the bank compacts and rebuilds.
//! Why a graph of our own and not the `hnsw` / `instant-distance` crates: see
//! [`hnsw`].
//!
//! # Memory
//! Per pattern: the unit `f32` embedding (4·d bytes), a ~100-byte record, 8 bytes
//! per result, an 8-byte slot id, the graph (1 level byte, `2·m` = 32 `u32`
//! links on layer 0, a 16-byte pointer to upper-layer links that ~1/16 of the
//! nodes have, a 4-byte visit mark, a 4-byte twin slot) and 4 bytes of side
//! index. A pattern whose embedding is identical to an indexed one (many viewers,
//! one query) becomes that node's twin: it is found with it, adds no links to
//! the graph and costs 4 more bytes in the twin table. Arrays grow by
//! 1/16 instead of doubling. [`ReasoningBank::approx_heap_bytes`] adds up all
//! capacities.
//!
//! # Measuring
//! - `cargo bench -p sona-core --bench bank -- --warm-up-time 1 --measurement-time 3`:
//!   search at 1k (exact scan), 10k and 100k patterns (d = 384), exact scan at
//!   10k, `apply_patterns`; prints recall@10 and bytes per pattern.
//! - 1M patterns: `cargo run --release -p sona-core --example bank_scale -- 1000000`
//!   builds a bank of 1M clustered 384-d patterns and reports build rate,
//!   bytes per pattern, persistence size and time, exact-scan time, and for each
//!   `--ef-search` recall@10 against exact search and search p50/p99
//!   (`--uniform` for random vectors on the sphere). Add `--save FILE` once and
//!   re-measure the same bank with `--load FILE` (e.g. other `--ef-search` /
//!   `--ef-upper`) without rebuilding.
//!
//! Measured at 1M with the defaults, machine quiet (`/usr/bin/time -v … bank_scale
//! -- 1000000 --ef-search 32,64,128,256`): build 287 s on one core (3,487
//! patterns/s), 1,878 heap bytes per pattern, file 1,740 bytes per pattern
//! (to_bytes 2.0 s, from_bytes 1.1 s), exact scan 53.8 ms/query; recall@10
//! 0.838 / 0.923 / 0.948 / 0.956 at ef_search 32 / 64 / 128 / 256, search p50
//! 174 / 237 / 323 / 416 µs (p99 214 / 348 / 397 / 489 µs). The upper-layer
//! beam matters at this size: on an earlier build of the same data with beam 1
//! recall@10 was 0.731 / 0.836 / 0.895 / 0.915 (`--save`, then `--load FILE
//! --ef-upper 1`).

pub mod hnsw;
pub mod learning;
pub mod maintenance;
pub mod pattern;
pub mod persist;

pub use hnsw::HnswConfig;
pub use learning::{LearnOutcome, QueryFeedback, Signal};
pub use maintenance::{AggregationReport, MaintenanceReport};
pub use pattern::{
    ContextMatchConfig, DayOfWeek, DeviceType, MatchedPattern, Mood, MoodSet, NewPattern, Pattern,
    PatternContext, PatternId, ResultId, TimeOfDay,
};

use hnsw::{dot, Hnsw};
use pattern::PatternRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use thiserror::Error;

/// Why a bank operation was refused. A refused call leaves the bank unchanged.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BankError {
    #[error("embedding has {found} dimensions, the bank stores {expected}")]
    WrongDimension { expected: usize, found: usize },
    #[error("embedding value at index {index} is not finite ({value})")]
    NonFinite { index: usize, value: f32 },
    #[error("embedding has zero length; cosine similarity is undefined")]
    ZeroVector,
    #[error("{what} = {value} is out of range ({range})")]
    OutOfRange {
        what: &'static str,
        value: f64,
        range: &'static str,
    },
    #[error("a pattern needs at least one successful result")]
    NoResults,
    #[error("no pattern with id {0}")]
    UnknownPattern(PatternId),
    #[error("invalid bank configuration: {0}")]
    InvalidConfig(String),
    #[error("bank file: {0}")]
    Codec(#[from] crate::codec::CodecError),
    #[error("bank file is corrupt: {0}")]
    Corrupt(String),
}

/// Every threshold of the bank. `Default` = the spec values where the spec
/// gives one (marked "spec"), otherwise our documented choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BankConfig {
    /// Embedding dimension.
    pub dim: usize,
    /// Default similarity floor of a search (spec: 0.7).
    pub min_similarity: f32,
    /// Search fetches `overfetch_factor × limit` before context filtering (spec: 2).
    pub overfetch_factor: usize,
    /// Context match thresholds.
    pub context: ContextMatchConfig,
    /// Divisor of the usage term of the boost (spec: 10).
    pub boost_usage_divisor: f32,
    /// Positive results one query needs to create a pattern (spec: 3).
    pub min_positive_results: usize,
    /// A watch counts as positive above this fraction (spec: 0.5).
    pub watch_positive_fraction: f32,
    /// Confidence of a newly learned pattern.
    pub initial_confidence: f32,
    /// Similarity at which a new positive query reinforces an existing pattern
    /// of the same owner instead of creating one.
    pub reinforce_similarity: f32,
    /// Reinforcement moves confidence this fraction of the way to 1.
    pub reinforce_rate: f32,
    /// Confidence taken off a matching pattern when one of its results is skipped.
    pub skip_penalty: f32,
    /// How many patterns a learning step looks at.
    pub learn_match_limit: usize,
    /// Cap on the results kept per pattern (bounds memory when unions grow).
    pub max_results_per_pattern: usize,
    /// Maintenance prunes patterns with confidence below this (spec: 0.3).
    pub prune_below: f32,
    /// Maintenance merges patterns more similar than this (spec: 0.95).
    pub merge_above: f32,
    /// Usage decays after this long unused, and again every such period (spec: 7 days).
    pub decay_after_secs: i64,
    /// Usage is multiplied by this (floored) per decay period.
    pub usage_decay_factor: f32,
    /// Patterns at least this similar form one cluster in global aggregation.
    pub aggregate_similarity: f32,
    /// A result is universal when more than this fraction of the users of a
    /// cluster had it among their successful results (spec: 0.8).
    pub universal_min_fraction: f32,
    /// Fewest distinct users a cluster needs for a universal pattern.
    pub universal_min_users: usize,
    /// A result enters a segment pattern when at least this fraction of the
    /// segment's users in the cluster had it.
    pub segment_min_fraction: f32,
    /// Fewest distinct users of one segment a cluster needs for a segment pattern.
    pub segment_min_users: usize,
    /// Most patterns one aggregation cluster takes (nearest to its seed).
    pub aggregate_max_cluster: usize,
    /// Pattern-match rate the product aims for (spec: 0.35); reported in stats.
    pub match_rate_target: f32,
    /// Below this many live patterns search scans exactly; at or above it an
    /// HNSW graph is built.
    pub exact_scan_below: usize,
    /// Graph parameters.
    pub hnsw: HnswConfig,
    /// Compact and rebuild the index when tombstones exceed this fraction of slots.
    pub rebuild_tombstone_fraction: f32,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            dim: 384,
            min_similarity: 0.7,
            overfetch_factor: 2,
            context: ContextMatchConfig::default(),
            boost_usage_divisor: 10.0,
            min_positive_results: 3,
            watch_positive_fraction: 0.5,
            initial_confidence: 0.6,
            reinforce_similarity: 0.9,
            reinforce_rate: 0.1,
            skip_penalty: 0.1,
            learn_match_limit: 10,
            max_results_per_pattern: 32,
            prune_below: 0.3,
            merge_above: 0.95,
            decay_after_secs: 7 * 86_400,
            usage_decay_factor: 0.5,
            aggregate_similarity: 0.9,
            universal_min_fraction: 0.8,
            universal_min_users: 5,
            segment_min_fraction: 0.5,
            segment_min_users: 3,
            aggregate_max_cluster: 256,
            match_rate_target: 0.35,
            exact_scan_below: 2_000,
            hnsw: HnswConfig::default(),
            rebuild_tombstone_fraction: 0.25,
        }
    }
}

impl BankConfig {
    /// Default thresholds for another embedding dimension.
    pub fn with_dim(dim: usize) -> Self {
        BankConfig {
            dim,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), BankError> {
        let bad = |m: &str| Err(BankError::InvalidConfig(m.to_string()));
        let unit = |x: f32| x.is_finite() && (0.0..=1.0).contains(&x);
        if self.dim == 0 || self.dim > 65_536 {
            return bad("dim must be in 1..=65536");
        }
        if self.overfetch_factor == 0 || self.min_positive_results == 0 {
            return bad("overfetch_factor and min_positive_results must be ≥ 1");
        }
        if !(self.boost_usage_divisor.is_finite() && self.boost_usage_divisor > 0.0) {
            return bad("boost_usage_divisor must be > 0");
        }
        for (n, x) in [
            ("watch_positive_fraction", self.watch_positive_fraction),
            ("initial_confidence", self.initial_confidence),
            ("reinforce_rate", self.reinforce_rate),
            ("skip_penalty", self.skip_penalty),
            ("prune_below", self.prune_below),
            ("usage_decay_factor", self.usage_decay_factor),
            ("universal_min_fraction", self.universal_min_fraction),
            ("segment_min_fraction", self.segment_min_fraction),
            ("match_rate_target", self.match_rate_target),
            (
                "rebuild_tombstone_fraction",
                self.rebuild_tombstone_fraction,
            ),
        ] {
            if !unit(x) {
                return Err(BankError::InvalidConfig(format!("{n} must be in [0, 1]")));
            }
        }
        for (n, x) in [
            ("min_similarity", self.min_similarity),
            ("reinforce_similarity", self.reinforce_similarity),
            ("merge_above", self.merge_above),
            ("aggregate_similarity", self.aggregate_similarity),
        ] {
            if !(x.is_finite() && (-1.0..=1.0).contains(&x)) {
                return Err(BankError::InvalidConfig(format!("{n} must be in [-1, 1]")));
            }
        }
        if self.decay_after_secs <= 0 {
            return bad("decay_after_secs must be > 0");
        }
        if self.max_results_per_pattern == 0
            || self.learn_match_limit == 0
            || self.aggregate_max_cluster == 0
        {
            return bad("max_results_per_pattern and learn_match_limit must be ≥ 1");
        }
        if self.hnsw.m < 2
            || self.hnsw.m > 1024
            || !(1..=65_536).contains(&self.hnsw.ef_construction)
            || !(1..=65_536).contains(&self.hnsw.ef_search)
            || !(1..=65_536).contains(&self.hnsw.ef_upper)
        {
            return bad("hnsw.m must be in 2..=1024, ef_construction and ef_search in 1..=65536");
        }
        if self.context.session_length_max_ratio.is_nan()
            || self.context.session_length_max_ratio < 1.0
        {
            return bad("context.session_length_max_ratio must be ≥ 1");
        }
        Ok(())
    }
}

/// Which patterns a search may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every pattern (a single-viewer, on-device bank).
    #[default]
    All,
    /// What one viewer may use in a shared bank: their own patterns, aggregated
    /// patterns of their segment, and universal patterns.
    User { user: u64, segment: Option<u32> },
    /// Only non-aggregated patterns owned by exactly this owner (`None` = the
    /// unowned patterns of a single-viewer bank).
    Owner(Option<u64>),
}

impl Scope {
    fn admits(&self, r: &PatternRecord) -> bool {
        match *self {
            Scope::All => true,
            Scope::User { user, segment } => match r.user {
                Some(u) => u == user,
                None => r.aggregated && (r.segment.is_none() || r.segment == segment),
            },
            Scope::Owner(o) => r.user == o && !r.aggregated,
        }
    }
}

/// Result of a similarity search.
#[derive(Clone, Debug, PartialEq)]
pub struct SimilarPatterns {
    /// Best first, at most `limit`.
    pub matches: Vec<MatchedPattern>,
    /// Live patterns in the bank the search ran over (the proto's field),
    /// before the scope and context filters.
    pub total_patterns_searched: usize,
    /// Similarity evaluations computed (exact scan: all; HNSW: a small part).
    pub similarity_evaluations: usize,
    /// Patterns fetched by the vector search (≤ `overfetch_factor × limit`).
    pub fetched: usize,
    /// Fetched patterns at or above `min_similarity` dropped by the context filter.
    pub rejected_by_context: usize,
    /// Whether the HNSW graph answered (else the exact scan).
    pub used_index: bool,
}

/// A candidate result with its score before boosting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: ResultId,
    pub score: f32,
}

/// A candidate after [`ReasoningBank::apply_patterns`].
#[derive(Clone, Debug, PartialEq)]
pub struct BoostedCandidate {
    pub id: ResultId,
    /// `score × (1 + boost)`.
    pub score: f32,
    pub original_score: f32,
    /// 0 when no pattern matched.
    pub boost: f32,
    /// The pattern that gave the boost.
    pub pattern: Option<PatternId>,
    /// "Matches successful pattern (confidence: 92%)".
    pub explanation: Option<String>,
}

/// Counters of what the bank has done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BankCounters {
    pub queries_seen: u64,
    pub queries_matched: u64,
    pub patterns_created: u64,
    pub patterns_reinforced: u64,
    pub patterns_weakened: u64,
    pub patterns_pruned: u64,
    pub patterns_merged: u64,
    pub usage_decays: u64,
    pub rebuilds: u64,
}

/// Snapshot of the bank's state.
#[derive(Clone, Debug, PartialEq)]
pub struct BankStats {
    pub patterns: usize,
    pub tombstones: usize,
    pub indexed: bool,
    pub counters: BankCounters,
    /// Fraction of learned-from queries that matched ≥ 1 pattern (0 before any).
    pub match_rate: f64,
    pub match_rate_target: f32,
    pub heap_bytes: usize,
}

/// The pattern memory.
#[derive(Clone, Debug)]
pub struct ReasoningBank {
    config: BankConfig,
    /// Slot-major unit vectors, `dim` floats per slot (tombstones keep theirs:
    /// the graph walks through them).
    vectors: Vec<f32>,
    slots: Vec<Option<PatternRecord>>,
    /// Id of each slot (tombstones included), strictly increasing: ids are
    /// handed out in order and compaction keeps the order, so a lookup is a
    /// binary search (8 bytes per pattern instead of a hash map's ~20–40).
    slot_ids: Vec<PatternId>,
    /// Slots of each viewer's own patterns, and of aggregated patterns
    /// (tombstones stay listed until compaction): a per-viewer search scans
    /// these few exactly instead of filtering the whole graph.
    owner_slots: HashMap<u64, Vec<u32>>,
    aggregated_slots: Vec<u32>,
    graph: Option<Hnsw>,
    next_id: PatternId,
    live: usize,
    counters: BankCounters,
}

/// Grow `v` for `extra` more elements by about 1/16 of its length (not the
/// doubling of `Vec::push`), so capacity slack stays ≤ ~6% of the bank while
/// appends stay amortized O(1) (large reallocations are page remaps).
pub(crate) fn reserve_modest<T>(v: &mut Vec<T>, extra: usize) {
    if v.len() + extra > v.capacity() {
        v.reserve_exact(extra.max(v.len() / 16).max(16));
    }
}

/// Keep the `k` most similar (ties: lower slot), most similar first.
fn top_k(all: &mut Vec<(f32, u32)>, k: usize) {
    let by_sim = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k == 0 {
        all.clear();
        return;
    }
    if all.len() > k {
        all.select_nth_unstable_by(k - 1, by_sim);
        all.truncate(k);
    }
    all.sort_unstable_by(by_sim);
}

/// Check an embedding and return it unit-normalized.
fn normalized(v: &[f32], dim: usize) -> Result<Vec<f32>, BankError> {
    if v.len() != dim {
        return Err(BankError::WrongDimension {
            expected: dim,
            found: v.len(),
        });
    }
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(BankError::NonFinite { index, value });
    }
    let norm = (v.iter().map(|&x| x as f64 * x as f64).sum::<f64>()).sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(BankError::ZeroVector);
    }
    Ok(v.iter().map(|&x| (x as f64 / norm) as f32).collect())
}

fn check_unit(what: &'static str, x: f32) -> Result<(), BankError> {
    if x.is_finite() && (0.0..=1.0).contains(&x) {
        Ok(())
    } else {
        Err(BankError::OutOfRange {
            what,
            value: x as f64,
            range: "[0, 1]",
        })
    }
}

fn check_context(c: &PatternContext) -> Result<(), BankError> {
    if let Some(s) = c.session_minutes {
        if !(s.is_finite() && s >= 0.0) {
            return Err(BankError::OutOfRange {
                what: "session_minutes",
                value: s as f64,
                range: "finite, ≥ 0",
            });
        }
    }
    Ok(())
}

/// Deduplicated (first occurrence kept), capped, without spare capacity.
fn clean_results(mut r: Vec<ResultId>, cap: usize) -> Box<[ResultId]> {
    let mut seen = std::collections::HashSet::with_capacity(r.len());
    r.retain(|x| seen.insert(*x));
    r.truncate(cap);
    r.into_boxed_slice()
}

impl ReasoningBank {
    /// An empty bank. Fails on an invalid configuration.
    pub fn new(config: BankConfig) -> Result<Self, BankError> {
        config.validate()?;
        Ok(ReasoningBank {
            config,
            vectors: Vec::new(),
            slots: Vec::new(),
            slot_ids: Vec::new(),
            owner_slots: HashMap::new(),
            aggregated_slots: Vec::new(),
            graph: None,
            next_id: 1,
            live: 0,
            counters: BankCounters::default(),
        })
    }

    pub fn config(&self) -> &BankConfig {
        &self.config
    }
    /// Live patterns.
    pub fn len(&self) -> usize {
        self.live
    }
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
    /// Change the search-time candidate list size of the graph (recall/speed knob).
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.config.hnsw.ef_search = ef_search.clamp(1, 65_536);
    }
    /// Change the beam of the descent through the upper graph layers.
    pub fn set_ef_upper(&mut self, ef_upper: usize) {
        self.config.hnsw.ef_upper = ef_upper.clamp(1, 65_536);
    }
    /// Whether searches use the HNSW graph.
    pub fn is_indexed(&self) -> bool {
        self.graph.is_some()
    }
    /// Ids of live patterns, in storage order.
    pub fn ids(&self) -> Vec<PatternId> {
        self.slots.iter().flatten().map(|r| r.id).collect()
    }

    fn vec_of(&self, slot: u32) -> &[f32] {
        let d = self.config.dim;
        &self.vectors[slot as usize * d..(slot as usize + 1) * d]
    }

    fn record(&self, id: PatternId) -> Result<(u32, &PatternRecord), BankError> {
        let slot = self
            .slot_ids
            .binary_search(&id)
            .map_err(|_| BankError::UnknownPattern(id))? as u32;
        let r = self.slots[slot as usize]
            .as_ref()
            .ok_or(BankError::UnknownPattern(id))?;
        Ok((slot, r))
    }

    fn record_mut(&mut self, slot: u32) -> &mut PatternRecord {
        self.slots[slot as usize]
            .as_mut()
            .expect("slot of a live id is occupied")
    }

    /// A full copy of one pattern.
    pub fn get(&self, id: PatternId) -> Result<Pattern, BankError> {
        let (slot, r) = self.record(id)?;
        Ok(Pattern {
            id: r.id,
            query_embedding: self.vec_of(slot).to_vec(),
            successful_results: r.results.to_vec(),
            user: r.user,
            segment: r.segment,
            context: r.context,
            confidence: r.confidence,
            usage_count: r.usage_count,
            created_at: r.created_at,
            last_used: r.last_used,
            aggregated: r.aggregated,
        })
    }

    /// Every live pattern, in storage order.
    pub fn patterns(&self) -> Vec<Pattern> {
        self.ids()
            .into_iter()
            .map(|id| self.get(id).expect("listed id is live"))
            .collect()
    }

    /// Store a new pattern created at `now`; returns its id.
    pub fn store_pattern(&mut self, p: NewPattern, now: i64) -> Result<PatternId, BankError> {
        let v = normalized(&p.query_embedding, self.config.dim)?;
        check_unit("confidence", p.confidence)?;
        check_context(&p.context)?;
        if p.successful_results.is_empty() {
            return Err(BankError::NoResults);
        }
        let id = self.next_id;
        let rec = PatternRecord {
            id,
            results: clean_results(p.successful_results, self.config.max_results_per_pattern),
            user: p.user,
            segment: p.segment,
            context: p.context,
            confidence: p.confidence,
            usage_count: p.usage_count,
            created_at: now,
            last_used: now,
            decay_steps: 0,
            aggregated: false,
        };
        self.insert_record(rec, &v);
        self.next_id += 1;
        Ok(id)
    }

    /// Append a validated record with its unit vector.
    fn insert_record(&mut self, rec: PatternRecord, unit: &[f32]) {
        debug_assert!(self.slot_ids.last().is_none_or(|&l| l < rec.id));
        reserve_modest(&mut self.slot_ids, 1);
        reserve_modest(&mut self.slots, 1);
        reserve_modest(&mut self.vectors, unit.len());
        self.slot_ids.push(rec.id);
        self.note_side_index(&rec, self.slots.len() as u32);
        self.slots.push(Some(rec));
        self.vectors.extend_from_slice(unit);
        self.live += 1;
        if let Some(g) = self.graph.as_mut() {
            g.insert(&self.vectors);
        } else if self.live >= self.config.exact_scan_below {
            self.rebuild_index();
        }
    }

    fn note_side_index(&mut self, rec: &PatternRecord, slot: u32) {
        if rec.aggregated {
            self.aggregated_slots.push(slot);
        } else if let Some(u) = rec.user {
            self.owner_slots.entry(u).or_default().push(slot);
        }
    }

    /// Rebuild the per-owner and aggregated slot lists from the slot table.
    fn rebuild_side_indexes(&mut self) {
        self.owner_slots = HashMap::new();
        self.aggregated_slots = Vec::new();
        let slots = std::mem::take(&mut self.slots);
        for (i, r) in slots.iter().enumerate() {
            if let Some(r) = r {
                self.note_side_index(r, i as u32);
            }
        }
        self.slots = slots;
    }

    /// Remove a pattern (tombstone; compacts when tombstones pile up).
    pub fn remove_pattern(&mut self, id: PatternId) -> Result<Pattern, BankError> {
        let p = self.get(id)?;
        self.tombstone(id);
        self.maybe_compact();
        Ok(p)
    }

    fn tombstone(&mut self, id: PatternId) {
        if let Ok(slot) = self.slot_ids.binary_search(&id) {
            if self.slots[slot].take().is_some() {
                self.live -= 1;
            }
        }
    }

    fn maybe_compact(&mut self) {
        let dead = self.slots.len() - self.live;
        if dead > 0
            && dead as f32 > self.config.rebuild_tombstone_fraction * self.slots.len() as f32
        {
            self.compact();
        }
    }

    /// Drop tombstones and rebuild the index (or go back to exact scan).
    pub fn compact(&mut self) {
        let d = self.config.dim;
        let mut vectors = Vec::with_capacity(self.live * d);
        let mut slots = Vec::with_capacity(self.live);
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(r) = s.take() {
                vectors.extend_from_slice(&self.vectors[i * d..(i + 1) * d]);
                slots.push(Some(r));
            }
        }
        self.vectors = vectors;
        self.slots = slots;
        self.slot_ids = self
            .slots
            .iter()
            .map(|r| r.as_ref().expect("compacted").id)
            .collect();
        self.rebuild_side_indexes();
        self.graph = None;
        if self.live >= self.config.exact_scan_below {
            self.rebuild_index();
        }
    }

    fn rebuild_index(&mut self) {
        let d = self.config.dim;
        let mut g = Hnsw::new(d, &self.config.hnsw);
        for i in 0..self.slots.len() {
            g.insert(&self.vectors[..(i + 1) * d]);
        }
        self.graph = Some(g);
        self.counters.rebuilds += 1;
    }

    /// Search with the default scope ([`Scope::All`]); see the module docs.
    pub fn find_similar_patterns(
        &self,
        query_embedding: &[f32],
        context: &PatternContext,
        limit: usize,
        min_similarity: f32,
    ) -> Result<SimilarPatterns, BankError> {
        self.find_similar_scoped(query_embedding, context, limit, min_similarity, Scope::All)
    }

    /// The `limit` most similar patterns in `scope` with similarity ≥
    /// `min_similarity` whose context matches `context`, found among the
    /// `overfetch_factor × limit` nearest patterns in scope.
    pub fn find_similar_scoped(
        &self,
        query_embedding: &[f32],
        context: &PatternContext,
        limit: usize,
        min_similarity: f32,
        scope: Scope,
    ) -> Result<SimilarPatterns, BankError> {
        let q = normalized(query_embedding, self.config.dim)?;
        check_context(context)?;
        if !(min_similarity.is_finite() && (-1.0..=1.0).contains(&min_similarity)) {
            return Err(BankError::OutOfRange {
                what: "min_similarity",
                value: min_similarity as f64,
                range: "[-1, 1]",
            });
        }
        let fetch = limit
            .saturating_mul(self.config.overfetch_factor)
            .min(self.live);
        let (near, evals, in_scope) = self.nearest(&q, fetch, scope);
        let fetched = near.len();
        let mut rejected_by_context = 0;
        let mut matches = Vec::with_capacity(limit.min(fetch));
        for (sim, slot) in near {
            if matches.len() >= limit || sim < min_similarity {
                break;
            }
            let r = self.slots[slot as usize].as_ref().expect("live slot");
            if !self.config.context.matches(&r.context, context) {
                rejected_by_context += 1;
                continue;
            }
            matches.push(MatchedPattern {
                id: r.id,
                similarity: sim,
                confidence: r.confidence,
                usage_count: r.usage_count,
                successful_results: r.results.to_vec(),
                user: r.user,
                segment: r.segment,
                context: r.context,
                aggregated: r.aggregated,
            });
        }
        Ok(SimilarPatterns {
            matches,
            total_patterns_searched: in_scope,
            similarity_evaluations: evals,
            fetched,
            rejected_by_context,
            used_index: self.graph.is_some(),
        })
    }

    /// The `k` nearest live patterns in scope as (similarity, slot), best first;
    /// evaluations; live patterns in scope.
    fn nearest(&self, q: &[f32], k: usize, scope: Scope) -> (Vec<(f32, u32)>, usize, usize) {
        let in_scope = self.live;
        let k = k.min(self.live);
        let admitted = |s: &u32| {
            self.slots[*s as usize]
                .as_ref()
                .is_some_and(|r| scope.admits(r))
        };
        match scope {
            Scope::Owner(Some(u)) => {
                let list = self.owner_slots.get(&u).map_or(&[][..], Vec::as_slice);
                let (near, evals) = self.exact_over(q, k, list.iter().copied().filter(admitted));
                return (near, evals, in_scope);
            }
            Scope::User { user, .. } => {
                let own = self.owner_slots.get(&user).map_or(&[][..], Vec::as_slice);
                let cands = own
                    .iter()
                    .chain(&self.aggregated_slots)
                    .copied()
                    .filter(admitted);
                let (near, evals) = self.exact_over(q, k, cands);
                return (near, evals, in_scope);
            }
            _ => {}
        }
        let accept = |s: u32| {
            self.slots[s as usize]
                .as_ref()
                .is_some_and(|r| scope.admits(r))
        };
        // Without tombstones every node is acceptable: skip the per-node record
        // lookup (a cache miss per candidate on large banks).
        let everything = |_: u32| true;
        let accept: &dyn Fn(u32) -> bool = if scope == Scope::All && self.live == self.slots.len() {
            &everything
        } else {
            &accept
        };
        let (near, evals) = self.nearest_by(q, k, accept);
        (near, evals, in_scope)
    }

    /// The `k` nearest accepted slots as (similarity, slot), best first, and
    /// the number of similarity evaluations.
    fn nearest_by(
        &self,
        q: &[f32],
        k: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> (Vec<(f32, u32)>, usize) {
        let k = k.min(self.live);
        if k == 0 {
            return (Vec::new(), 0);
        }
        if let Some(g) = &self.graph {
            let ef = self.config.hnsw.ef_search.max(k);
            g.search(q, &self.vectors, k, ef, self.config.hnsw.ef_upper, accept)
        } else {
            (self.exact_nearest(q, k, accept), self.live)
        }
    }

    /// Exact top-k over the given slots; also returns how many were scored.
    fn exact_over(
        &self,
        q: &[f32],
        k: usize,
        slots: impl Iterator<Item = u32>,
    ) -> (Vec<(f32, u32)>, usize) {
        let mut all: Vec<(f32, u32)> = slots.map(|s| (dot(q, self.vec_of(s)), s)).collect();
        let evals = all.len();
        top_k(&mut all, k);
        (all, evals)
    }

    /// Exact top-k by scanning every accepted slot.
    fn exact_nearest(&self, q: &[f32], k: usize, accept: &dyn Fn(u32) -> bool) -> Vec<(f32, u32)> {
        let d = self.config.dim;
        let mut all: Vec<(f32, u32)> = self
            .vectors
            .chunks_exact(d)
            .enumerate()
            .filter(|&(i, _)| accept(i as u32))
            .map(|(i, v)| (dot(q, v), i as u32))
            .collect();
        top_k(&mut all, k);
        all
    }

    /// Exact top-`k` pattern ids by cosine (no context filter): the reference
    /// the recall of the index is measured against.
    pub fn exact_top_k(
        &self,
        query_embedding: &[f32],
        k: usize,
    ) -> Result<Vec<PatternId>, BankError> {
        let q = normalized(query_embedding, self.config.dim)?;
        let accept = |s: u32| self.slots[s as usize].is_some();
        Ok(self
            .exact_nearest(&q, k, &accept)
            .into_iter()
            .map(|(_, s)| self.slots[s as usize].as_ref().expect("live").id)
            .collect())
    }

    /// Top-`k` pattern ids by cosine from the index in use (no context filter).
    pub fn index_top_k(
        &self,
        query_embedding: &[f32],
        k: usize,
    ) -> Result<Vec<PatternId>, BankError> {
        let q = normalized(query_embedding, self.config.dim)?;
        let (near, _, _) = self.nearest(&q, k, Scope::All);
        Ok(near
            .into_iter()
            .map(|(_, s)| self.slots[s as usize].as_ref().expect("live").id)
            .collect())
    }

    /// Boost of one pattern: `confidence · (1 + log2(max(usage, 1)) / divisor)`.
    pub fn boost_of(&self, confidence: f32, usage_count: u32) -> f32 {
        confidence * (1.0 + (usage_count.max(1) as f32).log2() / self.config.boost_usage_divisor)
    }

    /// Re-rank `candidates` with matched `patterns` (see the module docs for the
    /// formula and the strongest-boost rule). Returns every candidate, best
    /// first (ties keep input order). Scores must be finite and ≥ 0.
    pub fn apply_patterns(
        &self,
        candidates: &[Candidate],
        patterns: &[MatchedPattern],
    ) -> Result<Vec<BoostedCandidate>, BankError> {
        for c in candidates {
            if !(c.score.is_finite() && c.score >= 0.0) {
                return Err(BankError::OutOfRange {
                    what: "candidate score",
                    value: c.score as f64,
                    range: "finite, ≥ 0",
                });
            }
        }
        for p in patterns {
            check_unit("pattern confidence", p.confidence)?;
        }
        let mut out: Vec<BoostedCandidate> = candidates
            .iter()
            .map(|c| {
                let mut best: Option<(f32, &MatchedPattern)> = None;
                for p in patterns {
                    if p.successful_results.contains(&c.id) {
                        let b = self.boost_of(p.confidence, p.usage_count);
                        if best.is_none_or(|(bb, _)| b > bb) {
                            best = Some((b, p));
                        }
                    }
                }
                match best {
                    Some((b, p)) => BoostedCandidate {
                        id: c.id,
                        score: c.score * (1.0 + b),
                        original_score: c.score,
                        boost: b,
                        pattern: Some(p.id),
                        explanation: Some(format!(
                            "Matches successful pattern (confidence: {:.0}%)",
                            p.confidence * 100.0
                        )),
                    },
                    None => BoostedCandidate {
                        id: c.id,
                        score: c.score,
                        original_score: c.score,
                        boost: 0.0,
                        pattern: None,
                        explanation: None,
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(out)
    }

    fn side_index_bytes(&self) -> usize {
        // hashbrown: buckets = capacity·8/7 rounded up to a power of two, each
        // an entry plus one control byte.
        let cap = self.owner_slots.capacity();
        let buckets = if cap == 0 {
            0
        } else {
            (cap * 8 / 7).next_power_of_two()
        };
        buckets * (core::mem::size_of::<(u64, Vec<u32>)>() + 1)
            + self
                .owner_slots
                .values()
                .map(|v| v.capacity() * 4)
                .sum::<usize>()
            + self.aggregated_slots.capacity() * 4
    }

    /// Statistics, including the pattern-match rate.
    pub fn stats(&self) -> BankStats {
        let c = &self.counters;
        BankStats {
            patterns: self.live,
            tombstones: self.slots.len() - self.live,
            indexed: self.graph.is_some(),
            counters: c.clone(),
            match_rate: if c.queries_seen == 0 {
                0.0
            } else {
                c.queries_matched as f64 / c.queries_seen as f64
            },
            match_rate_target: self.config.match_rate_target,
            heap_bytes: self.approx_heap_bytes(),
        }
    }

    /// Bytes of every heap structure the bank owns, counted by capacity:
    /// vector arena, slot table, result lists, slot ids, graph.
    pub fn approx_heap_bytes(&self) -> usize {
        let slot = core::mem::size_of::<Option<PatternRecord>>();
        self.vectors.capacity() * 4
            + self.slots.capacity() * slot
            + self
                .slots
                .iter()
                .flatten()
                .map(PatternRecord::heap_bytes)
                .sum::<usize>()
            + self.slot_ids.capacity() * core::mem::size_of::<PatternId>()
            + self.side_index_bytes()
            + self.graph.as_ref().map_or(0, Hnsw::heap_bytes)
    }
}

#[cfg(test)]
mod tests;
