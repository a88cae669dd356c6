//! The ReasoningBank service behind the HTTP and gRPC handlers: one
//! `sona_core::bank::ReasoningBank` per segment (a content segment or cohort,
//! named on each request), each saved to the store's `banks` table after every
//! change, plus one **global tier** of aggregated patterns built from all
//! segments, and the maintenance schedule.
//!
//! - A user stores patterns owned by them in one segment and searches their
//!   own patterns there plus the global tier's universal patterns and the
//!   aggregated patterns of that segment. An admin stores unowned patterns and
//!   searches everything in the segment plus the same aggregated patterns.
//! - **Daily maintenance** ([`BankService::maintain`]): `ReasoningBank::maintain`
//!   (usage decay, prune, merge, compact) on every segment bank.
//! - **Weekly aggregation** ([`BankService::aggregate`]): every user-owned
//!   pattern of every segment is copied into one scratch bank tagged with its
//!   segment's index, `ReasoningBank::aggregate_global` builds the universal
//!   (cross-segment) and per-segment patterns, the copies are removed, and what
//!   remains replaces the global tier (saved under the reserved segment key
//!   [`GLOBAL_KEY`], together with the segment names the indices refer to).
//! - [`BankService::tick`] runs whichever job is due at `now` and records the
//!   run in the store's meta table, so a restart neither skips nor repeats a
//!   job; the server calls it on a timer, tests call it with an injected clock.
//!
//! Aggregated pattern ids have bit 63 set ([`GLOBAL_ID_BIT`]) so they never
//! collide with a segment bank's own ids.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sona_core::bank::{
    BankConfig, Candidate, MatchedPattern, NewPattern, Pattern, PatternContext, ReasoningBank,
    ResultId, Scope, SimilarPatterns,
};
use tokio::sync::Mutex;

use crate::store::{Store, StoreError};

/// Row of the `banks` table that holds the global tier (not a valid segment name).
pub const GLOBAL_KEY: &str = "__global__";
/// Segment of requests that name none (and of a bank saved by an older server).
pub const DEFAULT_SEGMENT: &str = "default";
/// Set on the ids of aggregated (global-tier) patterns.
pub const GLOBAL_ID_BIT: u64 = 1 << 63;
/// Where the single shared bank of earlier versions was kept (adapters table).
pub const LEGACY_BANK_KEY: &str = "__sona__reasoning_bank";
/// Meta keys recording the last scheduled runs (unix seconds).
pub const META_LAST_MAINTAIN: &str = "bank_last_maintain";
pub const META_LAST_AGGREGATE: &str = "bank_last_aggregate";
const GLOBAL_MAGIC: &[u8; 4] = b"SNBG";

#[derive(Debug, thiserror::Error)]
pub enum BankServiceError {
    #[error("invalid segment: {0}")]
    BadSegment(String),
    #[error("too many segments: at most {0} (--bank-max-segments)")]
    TooManySegments(usize),
    #[error("{0}")]
    Bank(#[from] sona_core::bank::BankError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bank task failed: {0}")]
    Task(String),
}

/// A segment name: 1–64 characters, ASCII letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit.
pub fn check_segment(s: &str) -> Result<(), BankServiceError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BankServiceError::BadSegment(format!(
            "{s:?}: 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )))
    }
}

/// The request's segment, or [`DEFAULT_SEGMENT`] when it names none.
pub fn segment_or_default(s: Option<&str>) -> Result<String, BankServiceError> {
    match s {
        None | Some("") => Ok(DEFAULT_SEGMENT.to_string()),
        Some(s) => {
            check_segment(s)?;
            Ok(s.to_string())
        }
    }
}

/// A user id as the bank's numeric owner (FNV-1a 64).
pub fn owner(user_id: &str) -> u64 {
    user_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Who asks: a user (their numeric owner) or an admin (`None`).
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub user: Option<u64>,
}

/// The aggregated patterns and the segment names their segment indices refer to.
struct GlobalTier {
    bank: ReasoningBank,
    segments: Vec<String>,
}

impl GlobalTier {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = GLOBAL_MAGIC.to_vec();
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.bank.to_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Result<Self, String> {
        let rest = b
            .strip_prefix(GLOBAL_MAGIC)
            .ok_or("global bank: bad magic")?;
        let (n, mut rest) = rest.split_at_checked(4).ok_or("global bank: truncated")?;
        let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
        let mut segments = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let (&len, r) = rest.split_first().ok_or("global bank: truncated")?;
            let (name, r) = r
                .split_at_checked(len as usize)
                .ok_or("global bank: truncated")?;
            let name = std::str::from_utf8(name).map_err(|_| "global bank: bad segment name")?;
            check_segment(name).map_err(|e| format!("global bank: {e}"))?;
            segments.push(name.to_string());
            rest = r;
        }
        let bank = ReasoningBank::from_bytes(rest).map_err(|e| format!("global bank: {e}"))?;
        Ok(GlobalTier { bank, segments })
    }

    fn index_of(&self, segment: &str) -> Option<u32> {
        self.segments
            .binary_search_by(|s| s.as_str().cmp(segment))
            .ok()
            .map(|i| i as u32)
    }
}

type SegmentBank = Arc<Mutex<ReasoningBank>>;

pub struct BankService {
    store: Arc<dyn Store>,
    config: BankConfig,
    max_segments: usize,
    segments: RwLock<BTreeMap<String, SegmentBank>>,
    global: RwLock<Arc<GlobalTier>>,
    /// One maintenance or aggregation at a time.
    jobs: Mutex<()>,
}

/// A search's matches over a segment bank and the global tier.
pub struct Found {
    pub matches: Vec<MatchedPattern>,
    pub total_patterns_searched: usize,
    pub used_index: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MaintainReport {
    pub segments: usize,
    pub decayed: usize,
    pub pruned: usize,
    pub merged: usize,
    /// Segments whose bank was compacted.
    pub compacted: usize,
    /// Live patterns in the maintained segments afterwards.
    pub patterns: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AggregateReport {
    pub segments: usize,
    /// User-owned patterns aggregated.
    pub input_patterns: usize,
    pub clusters: usize,
    pub segment_patterns: usize,
    pub universal_patterns: usize,
}

/// Which jobs [`BankService::tick`] ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickReport {
    pub maintained: Option<MaintainReport>,
    pub aggregated: Option<AggregateReport>,
}

/// How often the scheduled jobs run (seconds; 0 = never).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub maintain_every: u64,
    pub aggregate_every: u64,
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

impl BankService {
    /// Load every saved segment bank and the global tier (a bank saved by an
    /// older server under [`LEGACY_BANK_KEY`] becomes segment `default`).
    pub async fn open(
        store: Arc<dyn Store>,
        dim: usize,
        max_segments: usize,
    ) -> Result<Self, StoreError> {
        let config = BankConfig::with_dim(dim);
        let empty = || ReasoningBank::new(config.clone()).map_err(store_err);
        let mut names = store.bank_segments().await?;
        if names.is_empty() {
            if let Some(b) = store.get_adapter(LEGACY_BANK_KEY).await? {
                ReasoningBank::from_bytes(&b).map_err(store_err)?;
                store.put_bank(DEFAULT_SEGMENT, b).await?;
                names.push(DEFAULT_SEGMENT.to_string());
            }
        }
        let mut segments = BTreeMap::new();
        let mut global = GlobalTier {
            bank: empty()?,
            segments: Vec::new(),
        };
        for name in names {
            let bytes = store
                .get_bank(&name)
                .await?
                .ok_or_else(|| store_err(format!("bank of segment {name:?} vanished")))?;
            if name == GLOBAL_KEY {
                global = GlobalTier::from_bytes(&bytes).map_err(store_err)?;
                continue;
            }
            let bank = ReasoningBank::from_bytes(&bytes)
                .map_err(|e| store_err(format!("bank of segment {name:?}: {e}")))?;
            if bank.config().dim != dim {
                return Err(store_err(format!(
                    "bank of segment {name:?} has dimension {}, the server is configured for {dim}",
                    bank.config().dim
                )));
            }
            segments.insert(name, Arc::new(Mutex::new(bank)));
        }
        Ok(BankService {
            store,
            config,
            max_segments: max_segments.max(1),
            segments: RwLock::new(segments),
            global: RwLock::new(Arc::new(global)),
            jobs: Mutex::new(()),
        })
    }

    fn existing(&self, segment: &str) -> Option<SegmentBank> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(segment)
            .cloned()
    }

    fn get_or_create(&self, segment: &str) -> Result<SegmentBank, BankServiceError> {
        if let Some(b) = self.existing(segment) {
            return Ok(b);
        }
        let mut map = self.segments.write().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(segment) {
            return Ok(b.clone());
        }
        if map.len() >= self.max_segments {
            return Err(BankServiceError::TooManySegments(self.max_segments));
        }
        let b = Arc::new(Mutex::new(ReasoningBank::new(self.config.clone())?));
        map.insert(segment.to_string(), b.clone());
        Ok(b)
    }

    fn global(&self) -> Arc<GlobalTier> {
        self.global
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Segments with a bank, sorted.
    pub fn segment_names(&self) -> Vec<String> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// StorePattern: a pattern owned by the caller (unowned for an admin) in
    /// `segment`, saved before this returns.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_pattern(
        &self,
        segment: &str,
        caller: Caller,
        query_embedding: Vec<f32>,
        successful_results: Vec<ResultId>,
        context: PatternContext,
        confidence: f32,
        usage_count: u32,
        now: i64,
    ) -> Result<u64, BankServiceError> {
        check_segment(segment)?;
        let seg = self.get_or_create(segment)?;
        let mut bank = seg.lock().await;
        let id = bank.store_pattern(
            NewPattern {
                query_embedding,
                successful_results,
                user: caller.user,
                segment: None,
                context,
                confidence,
                usage_count,
            },
            now,
        )?;
        if let Err(e) = self.store.put_bank(segment, bank.to_bytes()).await {
            // Not durable: take it back so memory matches the store.
            let _ = bank.remove_pattern(id);
            return Err(e.into());
        }
        Ok(id)
    }

    /// FindSimilarPatterns over the caller's scope in `segment` and the global tier.
    pub async fn find(
        &self,
        segment: &str,
        caller: Caller,
        query: &[f32],
        context: &PatternContext,
        limit: usize,
        min_similarity: f32,
    ) -> Result<Found, BankServiceError> {
        check_segment(segment)?;
        if limit == 0 || limit > 1000 {
            return Err(BankServiceError::Invalid("limit must be 1..=1000".into()));
        }
        let global = self.global();
        let g = global.bank.find_similar_scoped(
            query,
            context,
            limit,
            min_similarity,
            // The global tier holds aggregated patterns only: universal ones
            // and those of this segment are admitted.
            Scope::User {
                user: 0,
                segment: global.index_of(segment),
            },
        )?;
        let mut matches: Vec<MatchedPattern> = g
            .matches
            .into_iter()
            .map(|mut m| {
                m.id |= GLOBAL_ID_BIT;
                m
            })
            .collect();
        let mut total = g.total_patterns_searched;
        let mut used_index = g.used_index;
        if let Some(seg) = self.existing(segment) {
            let scope = match caller.user {
                Some(user) => Scope::User {
                    user,
                    segment: None,
                },
                None => Scope::All,
            };
            let bank = seg.lock().await;
            let own: SimilarPatterns =
                bank.find_similar_scoped(query, context, limit, min_similarity, scope)?;
            total += own.total_patterns_searched;
            used_index |= own.used_index;
            matches.extend(own.matches);
        }
        // Best first; ties: own patterns before aggregated ones (stable sort).
        matches.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        matches.truncate(limit);
        Ok(Found {
            matches,
            total_patterns_searched: total,
            used_index,
        })
    }

    /// ApplyPatterns: re-rank `candidates` with the matches of a search.
    pub fn apply(
        &self,
        candidates: &[Candidate],
        matches: &[MatchedPattern],
    ) -> Result<Vec<sona_core::bank::BoostedCandidate>, BankServiceError> {
        Ok(self.global().bank.apply_patterns(candidates, matches)?)
    }

    /// Daily maintenance (decay, prune, merge, compact) of one segment or of
    /// all, at time `now`; each bank is saved afterwards.
    pub async fn maintain(
        &self,
        segment: Option<&str>,
        now: i64,
    ) -> Result<MaintainReport, BankServiceError> {
        let _job = self.jobs.lock().await;
        let names = match segment {
            Some(s) => {
                check_segment(s)?;
                vec![s.to_string()]
            }
            None => self.segment_names(),
        };
        let mut rep = MaintainReport::default();
        for name in names {
            let Some(seg) = self.existing(&name) else {
                continue;
            };
            let mut bank = seg.lock().await;
            let r = bank.maintain(now);
            self.store.put_bank(&name, bank.to_bytes()).await?;
            rep.segments += 1;
            rep.decayed += r.decayed.len();
            rep.pruned += r.pruned.len();
            rep.merged += r.merged.len();
            rep.compacted += r.compacted as usize;
            rep.patterns += bank.len();
        }
        Ok(rep)
    }

    /// Weekly global aggregation at time `now`: rebuild the global tier from
    /// the user-owned patterns of every segment (see the module docs).
    pub async fn aggregate(&self, now: i64) -> Result<AggregateReport, BankServiceError> {
        let _job = self.jobs.lock().await;
        let names = self.segment_names();
        let mut inputs: Vec<(u32, Vec<Pattern>)> = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if let Some(seg) = self.existing(name) {
                let bank = seg.lock().await;
                let own: Vec<Pattern> = bank
                    .patterns()
                    .into_iter()
                    .filter(|p| p.user.is_some() && !p.aggregated)
                    .collect();
                inputs.push((i as u32, own));
            }
        }
        let config = self.config.clone();
        let (tier, rep) =
            tokio::task::spawn_blocking(move || build_global_tier(config, names, inputs, now))
                .await
                .map_err(|e| BankServiceError::Task(e.to_string()))??;
        self.store.put_bank(GLOBAL_KEY, tier.to_bytes()).await?;
        *self.global.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tier);
        Ok(rep)
    }

    /// Run the jobs that are due at `now` under `schedule`. A job that never
    /// ran starts its clock now (its first run is one interval later); each
    /// run is recorded in the store, so restarts keep the cadence.
    pub async fn tick(&self, schedule: Schedule, now: i64) -> Result<TickReport, BankServiceError> {
        let mut rep = TickReport::default();
        if self
            .due(META_LAST_MAINTAIN, schedule.maintain_every, now)
            .await?
        {
            rep.maintained = Some(self.maintain(None, now).await?);
            self.store
                .put_meta(META_LAST_MAINTAIN, now.to_string())
                .await?;
        }
        if self
            .due(META_LAST_AGGREGATE, schedule.aggregate_every, now)
            .await?
        {
            rep.aggregated = Some(self.aggregate(now).await?);
            self.store
                .put_meta(META_LAST_AGGREGATE, now.to_string())
                .await?;
        }
        Ok(rep)
    }

    async fn due(&self, key: &str, every: u64, now: i64) -> Result<bool, StoreError> {
        if every == 0 {
            return Ok(false);
        }
        let last = self.store.init_meta(key, now.to_string()).await?;
        let last: i64 = last
            .parse()
            .map_err(|_| store_err(format!("meta {key} = {last:?} is not a time")))?;
        Ok(now.saturating_sub(last) >= every.min(i64::MAX as u64) as i64)
    }
}

fn build_global_tier(
    config: BankConfig,
    names: Vec<String>,
    inputs: Vec<(u32, Vec<Pattern>)>,
    now: i64,
) -> Result<(GlobalTier, AggregateReport), BankServiceError> {
    let mut bank = ReasoningBank::new(config)?;
    let mut input_patterns = 0;
    for (idx, patterns) in inputs {
        for p in patterns {
            bank.store_pattern(
                NewPattern {
                    query_embedding: p.query_embedding,
                    successful_results: p.successful_results,
                    user: p.user,
                    segment: Some(idx),
                    context: p.context,
                    confidence: p.confidence,
                    usage_count: p.usage_count,
                },
                p.last_used,
            )?;
            input_patterns += 1;
        }
    }
    let copies = bank.ids();
    let a = bank.aggregate_global(now);
    for id in copies {
        bank.remove_pattern(id)?;
    }
    bank.compact();
    let rep = AggregateReport {
        segments: names.len(),
        input_patterns,
        clusters: a.clusters,
        segment_patterns: a.segment_patterns.len(),
        universal_patterns: a.universal_patterns.len(),
    };
    Ok((
        GlobalTier {
            bank,
            segments: names,
        },
        rep,
    ))
}

#[cfg(test)]
mod tests;
