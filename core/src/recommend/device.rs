//! On-device fused ranking: what the npm engine (`sona-wasm`) runs for `recommend`.
//!
//! A viewer's device has the catalog the host app loads (titles, genres, years, one
//! embedding per title), the viewer's two-tier LoRA adapter ([`crate::personalize`]) and
//! the viewer's own recent interactions ([`ViewerHistory`]). Five strategies rank the
//! catalog from that, each into a list of its best [`FusionConfig::depth`] titles:
//!
//! - `cf`: the viewer's adapted taste, `⟨W′ q, e⟩` with both LoRA tiers (the global tier
//!   is what the federation learned across viewers, the viewer tier what this device
//!   learned). `q` is the query embedding, or without one the viewer's profile: the
//!   strength- and recency-weighted mean embedding of the titles they liked.
//! - `content`: how well a title matches the query. Query words (the router's
//!   tokenizer, light plural folding, filler words dropped) are matched against each
//!   title's genres and year, and on title-seeking routes (`gnn_similarity`,
//!   `vector_search`, `availability_check`) also against its title words: IDF-weighted
//!   cosine. Word matches rank first, then `⟨W q, e⟩` with the shared tiers only.
//! - `graph`: item–item neighbours of the viewer's recent titles (host-supplied related
//!   lists such as co-watch data when given, else the cosine of catalog embeddings),
//!   weighted by signal strength (a skip pushes its neighbours down) and recency; on
//!   `gnn_similarity` also the neighbours of the titles the query names.
//! - `context`: the viewer's genre preferences in the request's time-of-day slot, day of
//!   week and device, learned from their own liked titles: a naive-Bayes lift
//!   `Σ_f ln P(g | f) − ln P(g)` over the given factors, `P(g)` the viewer's overall
//!   genre share and `P(g | f)` Dirichlet-smoothed towards it (so a viewer who always
//!   watches in the same context gets no lift); a title scores the mean lift of its genres.
//! - `fresh`: newest release year first (ties share a rank).
//!
//! The lists are fused with weighted reciprocal rank fusion ([`super::fusion`]):
//! `RRF(d) = Σ_i w_i / (60 + rank_i(d))`, weights chosen by the query's route
//! ([`route_weights`]); the personalized default is [`DEFAULT_WEIGHTS`]. Each result
//! carries its per-strategy contributions and an explanation from the largest
//! contribution that can explain ("Because you watched …", "New this year", "Matches …").
//!
//! Cost per call on an `n × d` catalog: one pass of `n·d` multiply-adds for the query
//! match `⟨W q, e⟩` (explicit `f32x4` lanes in the simd128 build); the taste score adds
//! the viewer tier as `scale · Σ_k ⟨A_k, q⟩ ⟨B_k, e⟩`, `r` multiply-adds per title with
//! projections `⟨B_k, e⟩` cached until the tier changes; top-`depth` selections with a
//! bounded heap (O(n log depth)); sparse work for the rest. Every `n`-sized buffer is
//! allocated once per catalog.

use std::collections::HashMap;

use super::fusion::{rrf_term, Contribution, FusionConfig, DEFAULT_WEIGHTS};
use super::RecommendError;
use crate::personalize::{Adapter, Device};
use crate::router::tokenizer::words;
use crate::router::Route;

/// Strategy names in the order of [`route_weights`].
pub const ROLES: [&str; 5] = ["cf", "content", "graph", "context", "fresh"];
const CF: usize = 0;
const CONTENT: usize = 1;
const GRAPH: usize = 2;
const CONTEXT: usize = 3;
const FRESH: usize = 4;

/// Neighbours kept per title for the graph strategy.
pub const NEIGHBOURS: usize = 50;
/// Distinct recent titles used as graph seeds and for the profile.
pub const RECENT_TITLES: usize = 20;
/// Interactions kept in a [`ViewerHistory`].
pub const HISTORY_CAP: usize = 200;
/// Weight of the i-th most recent distinct title: `RECENCY^i`.
const RECENCY: f32 = 0.85;
/// Mean log lift a title's genres need in the request context to enter the context
/// list (≈ 5 % more likely than usual for this viewer).
const MIN_CONTEXT_LIFT: f32 = 0.05;
/// Cached neighbour lists before the cache is cleared.
const NEIGHBOUR_CACHE: usize = 512;

/// Strategy weights `[cf, content, graph, context, fresh]` for a route (`None`: no
/// query). Each row sums to 1.
///
/// - no query / `personalized_hybrid`: the spec's defaults (CF 0.3, content 0.2,
///   graph 0.4, context 0.1).
/// - `gnn_similarity` ("like X"): the graph / similar-items path dominates.
/// - `vector_search` ("find …") and `availability_check` ("where can I watch X"):
///   the query match dominates.
/// - `mood_matching`: query match and context (time of day, device) up.
/// - `catalog_freshness` ("what's new"): newest first outweighs everything else.
pub fn route_weights(route: Option<Route>) -> [f32; 5] {
    match route {
        None | Some(Route::PersonalizedHybrid) => [
            DEFAULT_WEIGHTS[0].1,
            DEFAULT_WEIGHTS[1].1,
            DEFAULT_WEIGHTS[2].1,
            DEFAULT_WEIGHTS[3].1,
            0.0,
        ],
        Some(Route::GnnSimilarity) => [0.15, 0.2, 0.6, 0.05, 0.0],
        Some(Route::VectorSearch) => [0.15, 0.6, 0.15, 0.1, 0.0],
        Some(Route::AvailabilityCheck) => [0.1, 0.7, 0.15, 0.05, 0.0],
        Some(Route::MoodMatching) => [0.25, 0.4, 0.1, 0.25, 0.0],
        Some(Route::CatalogFreshness) => [0.1, 0.15, 0.05, 0.0, 0.7],
    }
}

/// Routes on which title words of the query are matched against catalog titles.
fn seeks_titles(route: Option<Route>) -> bool {
    matches!(
        route,
        Some(Route::GnnSimilarity | Route::VectorSearch | Route::AvailabilityCheck)
    )
}

/// Filler words of requests (as folded), never matched against titles.
const FILLER: [&str; 42] = [
    "movie",
    "film",
    "show",
    "serie",
    "watch",
    "watching",
    "like",
    "find",
    "search",
    "something",
    "anything",
    "similar",
    "more",
    "recommend",
    "where",
    "can",
    "could",
    "the",
    "and",
    "for",
    "with",
    "from",
    "this",
    "that",
    "what",
    "whats",
    "some",
    "want",
    "tonight",
    "today",
    "week",
    "new",
    "good",
    "best",
    "about",
    "have",
    "get",
    "stream",
    "streaming",
    "play",
    "please",
    "one",
];

/// A word as the lexical match sees it: light plural folding ("comedies" → "comedy",
/// "thrillers" → "thriller", "childrens" → "children").
fn fold(w: &str) -> String {
    let n = w.chars().count();
    if n > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if n > 3 && w.ends_with('s') && !w.ends_with("ss") {
        w[..w.len() - 1].to_string()
    } else {
        w.to_string()
    }
}

/// Folded words of a text (the router tokenizer's words).
fn folded(text: &str) -> Vec<String> {
    words(text).iter().map(|w| fold(w)).collect()
}

/// One catalog title as ranking needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceItem {
    pub id: String,
    pub title: String,
    pub genres: Vec<String>,
    pub year: Option<u16>,
}

/// The request context. Every factor is optional; only the given ones are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceContext {
    /// 0..=23, local time.
    pub hour_of_day: Option<u8>,
    /// 0 = Monday ..= 6 = Sunday.
    pub day_of_week: Option<u8>,
    pub device: Option<Device>,
}

impl DeviceContext {
    pub fn validate(&self) -> Result<(), RecommendError> {
        if let Some(h) = self.hour_of_day.filter(|&h| h > 23) {
            return Err(RecommendError::InvalidInput(format!(
                "context.hourOfDay must be 0..=23, got {h}"
            )));
        }
        if let Some(d) = self.day_of_week.filter(|&d| d > 6) {
            return Err(RecommendError::InvalidInput(format!(
                "context.dayOfWeek must be 0..=6 (0 = Monday), got {d}"
            )));
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.hour_of_day.is_none() && self.day_of_week.is_none() && self.device.is_none()
    }
}

/// Six 4-hour slots of the day (as [`super::context`]).
fn slot(hour: u8) -> usize {
    (hour / 4) as usize
}
const SLOT_NAMES: [&str; 6] = [
    "late at night",
    "in the early morning",
    "in the morning",
    "in the afternoon",
    "in the evening",
    "at night",
];
const DAY_NAMES: [&str; 7] = [
    "on Mondays",
    "on Tuesdays",
    "on Wednesdays",
    "on Thursdays",
    "on Fridays",
    "on Saturdays",
    "on Sundays",
];
fn device_phrase(d: Device) -> &'static str {
    match d {
        Device::Tv => "on TV",
        Device::Mobile => "on your phone",
        Device::Tablet => "on your tablet",
        Device::Desktop => "on your computer",
        Device::Web => "on the web",
        Device::Other => "on this device",
    }
}

/// One recorded interaction: which title, how strong a signal (negative for skips and
/// low ratings), in which context, when (unix seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEvent {
    pub item: String,
    pub strength: f32,
    pub context: DeviceContext,
    pub at: i64,
}

/// The viewer's most recent interactions (at most [`HISTORY_CAP`], oldest first),
/// persisted with the adapter ([`ViewerHistory::to_bytes`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewerHistory {
    events: Vec<HistoryEvent>,
}

/// Devices in the order of their byte code in [`ViewerHistory::to_bytes`].
const DEVICES: [Device; 6] = [
    Device::Tv,
    Device::Mobile,
    Device::Tablet,
    Device::Desktop,
    Device::Web,
    Device::Other,
];
const NONE: u8 = 0xFF;
const HISTORY_FORMAT: u8 = 1;

impl ViewerHistory {
    /// Appends one interaction; the oldest is dropped beyond [`HISTORY_CAP`].
    pub fn record(
        &mut self,
        item: &str,
        strength: f32,
        context: DeviceContext,
        at: i64,
    ) -> Result<(), RecommendError> {
        if !strength.is_finite() {
            return Err(RecommendError::NonFinite);
        }
        context.validate()?;
        if self.events.len() == HISTORY_CAP {
            self.events.remove(0);
        }
        self.events.push(HistoryEvent {
            item: item.to_string(),
            strength,
            context,
            at,
        });
        Ok(())
    }

    pub fn events(&self) -> &[HistoryEvent] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Compact little-endian encoding: format byte, u32 count, then per event: u16 id
    /// length, id bytes, f32 strength, u8 hour, u8 day, u8 device (0xFF: not given), i64 time.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![HISTORY_FORMAT];
        b.extend((self.events.len() as u32).to_le_bytes());
        for e in &self.events {
            let id = &e.item.as_bytes()[..e.item.len().min(u16::MAX as usize)];
            b.extend((id.len() as u16).to_le_bytes());
            b.extend(id);
            b.extend(e.strength.to_le_bytes());
            b.push(e.context.hour_of_day.unwrap_or(NONE));
            b.push(e.context.day_of_week.unwrap_or(NONE));
            let dev = e
                .context
                .device
                .and_then(|d| DEVICES.iter().position(|&x| x == d));
            b.push(dev.map_or(NONE, |i| i as u8));
            b.extend(e.at.to_le_bytes());
        }
        b
    }

    /// Decodes [`to_bytes`](Self::to_bytes); rejects truncated, oversized or invalid data.
    pub fn from_bytes(b: &[u8]) -> Result<Self, RecommendError> {
        let bad = |m: &str| RecommendError::InvalidInput(format!("viewer history: {m}"));
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], RecommendError> {
            let s = b.get(at..at + n).ok_or_else(|| bad("truncated"))?;
            at += n;
            Ok(s)
        };
        let mut arr = |n: usize| -> Result<[u8; 8], RecommendError> {
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(take(n)?);
            Ok(a)
        };
        if arr(1)?[0] != HISTORY_FORMAT {
            return Err(bad("unknown format"));
        }
        let w = arr(4)?;
        let n = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize;
        if n > HISTORY_CAP {
            return Err(bad("too many events"));
        }
        let mut h = ViewerHistory::default();
        for _ in 0..n {
            let w = arr(2)?;
            let len = u16::from_le_bytes([w[0], w[1]]) as usize;
            let mut id = vec![0u8; len];
            for x in id.iter_mut() {
                *x = arr(1)?[0];
            }
            let item = String::from_utf8(id).map_err(|_| bad("id is not UTF-8"))?;
            let w = arr(4)?;
            let strength = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let c = arr(3)?;
            let opt = |v: u8| (v != NONE).then_some(v);
            let device = match opt(c[2]) {
                None => None,
                Some(i) => Some(
                    *DEVICES
                        .get(i as usize)
                        .ok_or_else(|| bad("unknown device"))?,
                ),
            };
            let context = DeviceContext {
                hour_of_day: opt(c[0]),
                day_of_week: opt(c[1]),
                device,
            };
            let t = i64::from_le_bytes(arr(8)?);
            h.record(&item, strength, context, t)?;
        }
        if arr(1).is_ok() {
            return Err(bad("trailing bytes"));
        }
        Ok(h)
    }
}

/// Per-genre context lift with its best factor, and the request's factor phrases.
type ContextWhy<'a> = (&'a [(f32, u8)], &'a [&'a str; 4]);

/// One ranking request. Item indices are catalog positions.
#[derive(Clone, Debug, Default)]
pub struct DeviceRequest<'a> {
    /// The query's route (`None` without a query): picks the weights.
    pub route: Option<Route>,
    /// The query text, for word matches.
    pub text: Option<&'a str>,
    /// The query embedding (d floats).
    pub query: Option<&'a [f32]>,
    pub context: Option<DeviceContext>,
    /// Never returned.
    pub exclude: &'a [u32],
    pub k: usize,
    /// Unix seconds (for "New this year").
    pub now: i64,
}

/// One fused result.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRec {
    pub item: u32,
    /// `Σ w / (60 + rank)` over the strategies that listed it (0 for fill-ins).
    pub score: f32,
    /// Largest first.
    pub contributions: Vec<Contribution>,
    pub explanation: String,
    /// `⟨W q, e⟩` with the shared tiers (q: the query embedding, else the profile).
    pub query_score: Option<f32>,
    /// What this viewer's tier adds: `⟨W′ q, e⟩ − ⟨W q, e⟩`.
    pub personal_score: Option<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRanking {
    pub weights: [f32; 5],
    pub items: Vec<DeviceRec>,
}

/// Per-catalog structures (built once in [`DeviceRanker::new`]) and per-call scratch.
#[derive(Clone, Debug)]
pub struct DeviceRanker {
    d: usize,
    items: Vec<DeviceItem>,
    index: HashMap<String, u32>,
    /// n × d, row-major, and each row's L2 norm.
    embeddings: Vec<f32>,
    norms: Vec<f32>,
    /// Genre names (as first given), their folded words, and each item's genre ids.
    genre_names: Vec<String>,
    genre_words: Vec<Vec<String>>,
    item_genres: Vec<Vec<u16>>,
    genre_items: Vec<Vec<u32>>,
    genre_idf: Vec<f32>,
    /// Title words: id → items, idf; each item's title word ids.
    title_vocab: HashMap<String, u32>,
    title_words: Vec<String>,
    title_items: Vec<Vec<u32>>,
    title_idf: Vec<f32>,
    item_words: Vec<Vec<u32>>,
    /// Items and idf per year `YEAR0..=YEAR1` (index `year - YEAR0`).
    year_items: Vec<Vec<u32>>,
    year_idf: Vec<f32>,
    /// `sqrt(Σ idf²)` over each item's genre, year and title features, and the same
    /// without title words.
    lex_norm: Vec<f32>,
    lex_norm_no_title: Vec<f32>,
    /// Items with a year, newest first (ties: lower index first).
    fresh_order: Vec<u32>,
    /// Host-supplied related titles (e.g. co-watch), per item; empty = use embeddings.
    related: Vec<Vec<(u32, f32)>>,
    /// Embedding neighbours computed so far (per item), and how many.
    neighbour_cache: Vec<Option<Vec<(u32, f32)>>>,
    cached: usize,
    cfg: FusionConfig,
    scratch: Scratch,
}

#[derive(Clone, Debug)]
struct Scratch {
    s_query: Vec<f32>,
    s_taste: Vec<f32>,
    pairs: Vec<(f32, u32)>,
    sparse: Vec<f32>,
    sparse_touched: Vec<u32>,
    fused: Vec<f32>,
    fused_touched: Vec<u32>,
    excluded: Vec<bool>,
    lists: [Vec<(u32, u32)>; 5],
    /// `W′ q` (validated, not scanned) and `W q` of the request.
    y: Vec<f32>,
    ys: Vec<f32>,
    /// `⟨B_k, e_i⟩` (n × r) for the viewer-tier rows `proj_b` they were computed from.
    proj: Vec<f32>,
    proj_b: Vec<f32>,
    profile: Vec<f32>,
}

/// Sum of eight lane accumulators in a fixed order (the same on every target).
#[inline]
fn reduce8(v: [f32; 8]) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// `⟨a, e⟩` with eight lane accumulators: lane `l` sums `a[i]·e[i]` over `i ≡ l (mod 8)`,
/// then [`reduce8`] and the tail. The simd128 build does the same adds and multiplies in
/// `f32x4` registers, so both builds give bit-identical results.
#[inline]
fn dot1(a: &[f32], e: &[f32]) -> f32 {
    let n8 = a.len().min(e.len()) / 8 * 8;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let s = simd::dot1(&a[..n8], &e[..n8]);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let s = {
        let mut s = [0f32; 8];
        for (x, z) in a[..n8].chunks_exact(8).zip(e[..n8].chunks_exact(8)) {
            for l in 0..8 {
                s[l] += x[l] * z[l];
            }
        }
        s
    };
    let mut tail = 0f32;
    for (x, z) in a[n8..].iter().zip(&e[n8..]) {
        tail += x * z;
    }
    reduce8(s) + tail
}

/// Explicit simd128 lanes: the size-optimized wasm build does not auto-vectorize.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::{f32x4_add, f32x4_mul, f32x4_splat, v128, v128_load, v128_store};

    #[inline]
    fn load(s: &[f32], i: usize) -> v128 {
        debug_assert!(i + 4 <= s.len());
        // SAFETY: i + 4 ≤ s.len() (callers step by 8 over a multiple-of-8 length);
        // v128_load has no alignment requirement.
        unsafe { v128_load(s.as_ptr().add(i) as *const v128) }
    }

    #[inline]
    fn lanes(lo: v128, hi: v128) -> [f32; 8] {
        let mut out = [0f32; 8];
        // SAFETY: out holds 8 f32 = two v128; stores need no alignment.
        unsafe {
            v128_store(out.as_mut_ptr() as *mut v128, lo);
            v128_store(out.as_mut_ptr().add(4) as *mut v128, hi);
        }
        out
    }

    /// Lane sums of `a·e`; `a.len() == e.len()`, a multiple of 8.
    pub fn dot1(a: &[f32], e: &[f32]) -> [f32; 8] {
        let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut i = 0;
        while i + 8 <= a.len() {
            lo = f32x4_add(lo, f32x4_mul(load(a, i), load(e, i)));
            hi = f32x4_add(hi, f32x4_mul(load(a, i + 4), load(e, i + 4)));
            i += 8;
        }
        lanes(lo, hi)
    }
}

/// Score descending, ties to the lower index: the one order every list here uses (a
/// total order, so unstable sorts and selections are deterministic).
fn by_score(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// True when `a` ranks after `b`.
#[inline]
fn worse(a: &(f32, u32), b: &(f32, u32)) -> bool {
    by_score(a, b) == std::cmp::Ordering::Greater
}

/// Restores the heap below `i` in `h`, a binary heap whose root is the worst entry.
fn sift_down(h: &mut [(f32, u32)], mut i: usize) {
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut w = i;
        if l < h.len() && worse(&h[l], &h[w]) {
            w = l;
        }
        if r < h.len() && worse(&h[r], &h[w]) {
            w = r;
        }
        if w == i {
            return;
        }
        h.swap(i, w);
        i = w;
    }
}

/// Sorts best first in [`by_score`] order: a heapsort (small code, no allocation).
fn sort_pairs(v: &mut [(f32, u32)]) {
    for i in (0..v.len() / 2).rev() {
        sift_down(v, i);
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(&mut v[..end], 0);
    }
}

/// Adds `p` to `h`, a heap of the best `depth` entries seen so far (root: the worst).
#[inline]
fn top_push(h: &mut Vec<(f32, u32)>, depth: usize, p: (f32, u32)) {
    if h.len() < depth {
        h.push(p);
        let mut i = h.len() - 1;
        while i > 0 && worse(&h[i], &h[(i - 1) / 2]) {
            h.swap(i, (i - 1) / 2);
            i = (i - 1) / 2;
        }
    } else if depth > 0 && worse(&h[0], &p) {
        h[0] = p;
        sift_down(h, 0);
    }
}

/// Keeps the best `depth` of `c`, sorted best first: O(len · log depth), in place.
fn keep_top(c: &mut Vec<(f32, u32)>, depth: usize) {
    if c.len() > depth {
        let k = depth;
        for i in (0..k / 2).rev() {
            sift_down(&mut c[..k], i);
        }
        for j in k..c.len() {
            if k > 0 && worse(&c[0], &c[j]) {
                c[0] = c[j];
                sift_down(&mut c[..k], 0);
            }
        }
        c.truncate(k);
    }
    sort_pairs(c);
}

/// First and last year with a word-match feature ("movies from 1977").
const YEAR0: u16 = 1870;
const YEAR1: u16 = 2100;

/// Ranks 1.. of a sorted list into `out` as (item, rank).
fn ranked(c: &[(f32, u32)], out: &mut Vec<(u32, u32)>) {
    out.clear();
    out.extend(c.iter().enumerate().map(|(r, &(_, i))| (i, r as u32 + 1)));
}

/// Civil year of a unix time (UTC), proleptic Gregorian.
pub fn year_of(unix_secs: i64) -> i64 {
    // Howard Hinnant's days-to-civil.
    let z = unix_secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

impl DeviceRanker {
    /// Builds every per-catalog structure. `embeddings` is `items.len() × d`, finite;
    /// ids unique and non-empty. `related`: (id, [(other id, weight > 0)]) lists that
    /// replace those titles' embedding neighbours (e.g. co-watch data).
    pub fn new(
        d: usize,
        items: Vec<DeviceItem>,
        embeddings: Vec<f32>,
        related: Vec<(String, Vec<(String, f32)>)>,
    ) -> Result<Self, RecommendError> {
        let n = items.len();
        let bad = |m: String| Err(RecommendError::InvalidInput(m));
        if n == 0 {
            return bad("the catalog has no items".into());
        }
        if n > u32::MAX as usize / 2 || d == 0 {
            return bad(format!("catalog of {n} items with d = {d}"));
        }
        // Checked: on wasm32 a large n × d would wrap and let a short array through.
        let Some(want) = n.checked_mul(d) else {
            return bad(format!(
                "catalog of {n} items × d {d} floats overflows this platform's sizes"
            ));
        };
        if embeddings.len() != want {
            return bad(format!(
                "embeddings has {} floats, expected {n} items × d {d} = {want}",
                embeddings.len()
            ));
        }
        if let Some(i) = embeddings.iter().position(|x| !x.is_finite()) {
            return bad(format!(
                "embeddings: value at index {i} is not finite ({})",
                embeddings[i]
            ));
        }
        let mut index = HashMap::with_capacity(n);
        for (i, it) in items.iter().enumerate() {
            if it.id.is_empty() {
                return bad(format!("item {i} has an empty id"));
            }
            if index.insert(it.id.clone(), i as u32).is_some() {
                return bad(format!("duplicate item id {:?}", it.id));
            }
        }
        let mut rel: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for (id, list) in related {
            let Some(&i) = index.get(&id) else {
                return bad(format!("related: unknown item {id:?}"));
            };
            let mut pairs: Vec<(f32, u32)> = Vec::with_capacity(list.len());
            for (other, w) in list {
                let Some(&j) = index.get(&other) else {
                    return bad(format!("related[{id:?}]: unknown item {other:?}"));
                };
                if j == i || !(w > 0.0 && w.is_finite()) {
                    return bad(format!(
                        "related[{id:?}]: ({other:?}, {w}) must name another title with a finite weight > 0"
                    ));
                }
                pairs.push((w, j));
            }
            sort_pairs(&mut pairs);
            let l = &mut rel[i as usize];
            for (w, j) in pairs {
                if l.len() < NEIGHBOURS && !l.iter().any(|e: &(u32, f32)| e.0 == j) {
                    l.push((j, w));
                }
            }
        }
        let related = rel;
        let norms: Vec<f32> = embeddings
            .chunks_exact(d)
            .map(|e| dot1(e, e).sqrt())
            .collect();
        let nf = n as f32;
        let idf = |df: usize| (1.0 + nf / df.max(1) as f32).ln();

        // Genres.
        let mut genre_ids: HashMap<String, u32> = HashMap::new();
        let mut genre_names = Vec::new();
        let mut item_genres = Vec::with_capacity(n);
        for it in &items {
            let mut gs: Vec<u16> = Vec::new();
            for g in &it.genres {
                // Genres are the same when their words are ("Sci-Fi" = "sci fi").
                let key = words(g).join(" ");
                if key.is_empty() {
                    continue;
                }
                let next = genre_names.len();
                if next >= u16::MAX as usize {
                    return bad("more than 65534 distinct genres".into());
                }
                let id = *genre_ids.entry(key).or_insert_with(|| {
                    genre_names.push(g.trim().to_string());
                    next as u32
                }) as u16;
                if !gs.contains(&id) {
                    gs.push(id);
                }
            }
            item_genres.push(gs);
        }
        let mut genre_items = vec![Vec::new(); genre_names.len()];
        for (i, gs) in item_genres.iter().enumerate() {
            for &g in gs {
                genre_items[g as usize].push(i as u32);
            }
        }
        let genre_words: Vec<Vec<String>> = genre_names.iter().map(|g| folded(g)).collect();
        let genre_idf: Vec<f32> = genre_items.iter().map(|v| idf(v.len())).collect();

        // Title words.
        let mut title_vocab: HashMap<String, u32> = HashMap::new();
        let mut title_items: Vec<Vec<u32>> = Vec::new();
        let mut item_words = Vec::with_capacity(n);
        for (i, it) in items.iter().enumerate() {
            let mut ws: Vec<u32> = Vec::new();
            for w in folded(&it.title) {
                if w.chars().count() < 2 {
                    continue;
                }
                let next = title_items.len() as u32;
                let id = *title_vocab.entry(w).or_insert(next);
                if id == next {
                    title_items.push(Vec::new());
                }
                if !ws.contains(&id) {
                    ws.push(id);
                    title_items[id as usize].push(i as u32);
                }
            }
            item_words.push(ws);
        }
        let title_idf: Vec<f32> = title_items.iter().map(|v| idf(v.len())).collect();
        let mut title_words = vec![String::new(); title_items.len()];
        for (w, &id) in &title_vocab {
            title_words[id as usize] = w.clone();
        }

        // Years.
        let mut year_items: Vec<Vec<u32>> = vec![Vec::new(); (YEAR1 - YEAR0 + 1) as usize];
        for (i, it) in items.iter().enumerate() {
            if let Some(y) = it.year.filter(|y| (YEAR0..=YEAR1).contains(y)) {
                year_items[(y - YEAR0) as usize].push(i as u32);
            }
        }
        let year_idf: Vec<f32> = year_items.iter().map(|v| idf(v.len())).collect();

        let mut lex_norm = Vec::with_capacity(n);
        let mut lex_norm_no_title = Vec::with_capacity(n);
        for (i, it) in items.iter().enumerate() {
            let mut s: f32 = item_genres[i]
                .iter()
                .map(|&g| genre_idf[g as usize].powi(2))
                .sum();
            if let Some(y) = it.year.filter(|y| (YEAR0..=YEAR1).contains(y)) {
                s += year_idf[(y - YEAR0) as usize].powi(2);
            }
            lex_norm_no_title.push(s.sqrt());
            s += item_words[i]
                .iter()
                .map(|&w| title_idf[w as usize].powi(2))
                .sum::<f32>();
            lex_norm.push(s.sqrt());
        }

        let mut by_year: Vec<(f32, u32)> = (0..n as u32)
            .filter_map(|i| items[i as usize].year.map(|y| (y as f32, i)))
            .collect();
        sort_pairs(&mut by_year);
        let fresh_order: Vec<u32> = by_year.into_iter().map(|p| p.1).collect();

        let scratch = Scratch {
            s_query: vec![0.0; n],
            s_taste: vec![0.0; n],
            pairs: Vec::with_capacity(n),
            sparse: vec![0.0; n],
            sparse_touched: Vec::new(),
            fused: vec![0.0; n],
            fused_touched: Vec::new(),
            excluded: vec![false; n],
            lists: Default::default(),
            y: vec![0.0; d],
            ys: vec![0.0; d],
            proj: Vec::new(),
            proj_b: Vec::new(),
            profile: vec![0.0; d],
        };
        Ok(DeviceRanker {
            d,
            items,
            index,
            embeddings,
            norms,
            genre_names,
            genre_words,
            item_genres,
            genre_items,
            genre_idf,
            title_vocab,
            title_words,
            title_items,
            title_idf,
            item_words,
            year_items,
            year_idf,
            lex_norm,
            lex_norm_no_title,
            fresh_order,
            related,
            neighbour_cache: vec![None; n],
            cached: 0,
            cfg: FusionConfig::default(),
            scratch,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn item(&self, i: u32) -> &DeviceItem {
        &self.items[i as usize]
    }

    /// Catalog position of an id.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// n × d row-major embeddings.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }

    pub fn embedding(&self, i: u32) -> &[f32] {
        let i = i as usize;
        &self.embeddings[i * self.d..(i + 1) * self.d]
    }

    /// The [`NEIGHBOURS`] titles most related to `i`: the host's related list when it
    /// gave one, else the highest cosine of catalog embeddings (ties to the lower index).
    pub fn neighbours(&mut self, i: u32) -> &[(u32, f32)] {
        if !self.related[i as usize].is_empty() {
            return &self.related[i as usize];
        }
        if self.neighbour_cache[i as usize].is_none() {
            if self.cached >= NEIGHBOUR_CACHE {
                self.neighbour_cache.iter_mut().for_each(|c| *c = None);
                self.cached = 0;
            }
            let list = self.embedding_neighbours(i);
            self.neighbour_cache[i as usize] = Some(list);
            self.cached += 1;
        }
        self.neighbour_cache[i as usize].as_deref().unwrap_or(&[])
    }

    fn embedding_neighbours(&mut self, i: u32) -> Vec<(u32, f32)> {
        let d = self.d;
        let e = &self.embeddings[i as usize * d..(i as usize + 1) * d];
        let ni = self.norms[i as usize];
        let pairs = &mut self.scratch.pairs;
        pairs.clear();
        if ni > 0.0 {
            for (j, (f, &nj)) in self.embeddings.chunks_exact(d).zip(&self.norms).enumerate() {
                if j as u32 != i && nj > 0.0 {
                    top_push(pairs, NEIGHBOURS, (dot1(e, f) / (ni * nj), j as u32));
                }
            }
        }
        sort_pairs(pairs);
        pairs
            .iter()
            .filter(|p| p.0 > 0.0)
            .map(|&(s, j)| (j, s))
            .collect()
    }

    /// Distinct recent titles of `history` that are in this catalog, newest first, with
    /// their summed signal strength times `RECENCY^position` (at most [`RECENT_TITLES`]).
    fn recent(&self, history: &ViewerHistory) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = Vec::new();
        let mut raw: Vec<(u32, f32)> = Vec::new();
        for ev in history.events.iter().rev() {
            let Some(i) = self.index_of(&ev.item) else {
                continue;
            };
            match raw.iter().position(|e| e.0 == i) {
                Some(p) => raw[p].1 += ev.strength,
                None if raw.len() < RECENT_TITLES => raw.push((i, ev.strength)),
                None => {}
            }
        }
        let mut decay = 1.0f32;
        for (i, s) in raw {
            out.push((i, s * decay));
            decay *= RECENCY;
        }
        out
    }

    /// Ranks the catalog for `req`. `adapter` is the viewer's adapter and `shared` the
    /// same shared tiers with a zero viewer tier (both of this catalog's `d`).
    /// Validates everything before any work; the ranker's visible state never changes
    /// except for cached neighbour lists.
    pub fn recommend(
        &mut self,
        req: &DeviceRequest<'_>,
        adapter: &Adapter,
        shared: &Adapter,
        history: &ViewerHistory,
    ) -> Result<DeviceRanking, RecommendError> {
        let n = self.items.len();
        let d = self.d;
        if req.k == 0 {
            return Err(RecommendError::InvalidInput("k must be ≥ 1".into()));
        }
        if adapter.config().d != d || shared.config().d != d {
            return Err(RecommendError::InvalidConfig(format!(
                "adapter d = {} but the catalog has d = {d}",
                adapter.config().d
            )));
        }
        if let Some(q) = req.query {
            if q.len() != d {
                return Err(RecommendError::InvalidInput(format!(
                    "query embedding has {} floats, expected d = {d}",
                    q.len()
                )));
            }
            if q.iter().any(|x| !x.is_finite()) {
                return Err(RecommendError::NonFinite);
            }
        }
        if let Some(c) = &req.context {
            c.validate()?;
        }
        if let Some(&i) = req.exclude.iter().find(|&&i| i as usize >= n) {
            return Err(RecommendError::ItemOutOfRange {
                item: i,
                n_items: n,
            });
        }
        let weights = route_weights(req.route);
        let depth = self.cfg.depth.max(req.k);
        let recent = self.recent(history);

        // ---- taste / query vectors ----
        let has_profile = self.profile_into(&recent);
        let has_basis = req.query.is_some() || has_profile;
        let sc = &mut self.scratch;
        let basis: Option<&[f32]> = match req.query {
            Some(q) => Some(q),
            None if has_profile => Some(&sc.profile),
            None => None,
        };
        if let Some(q) = basis {
            adapter
                .adapt_into(q, &mut sc.y)
                .map_err(|e| RecommendError::Personalize(e.to_string()))?;
            shared
                .adapt_into(q, &mut sc.ys)
                .map_err(|e| RecommendError::Personalize(e.to_string()))?;
        }
        // ---- validated; from here on nothing fails ----
        for &i in req.exclude {
            sc.excluded[i as usize] = true;
        }
        for l in sc.lists.iter_mut() {
            l.clear();
        }

        // cf and the embedding half of content: one pass over the catalog.
        if has_basis {
            for (s, e) in sc.s_query.iter_mut().zip(self.embeddings.chunks_exact(d)) {
                *s = dot1(&sc.ys, e);
            }
            let (a, b, scale) = adapter.viewer_tier();
            if b.iter().all(|&x| x == 0.0) {
                // No learned viewer tier yet: taste and query match coincide.
                sc.s_taste.copy_from_slice(&sc.s_query);
            } else {
                // ⟨W′q, e⟩ = ⟨W q, e⟩ + scale · Σ_k ⟨A_k, q⟩ ⟨B_k, e⟩: r multiply-adds per
                // title with the projections ⟨B_k, e⟩, recomputed only when B has changed.
                let r = b.len() / d;
                if sc.proj_b.as_slice() != b {
                    sc.proj.resize(n * r, 0.0);
                    for (p, e) in sc
                        .proj
                        .chunks_exact_mut(r)
                        .zip(self.embeddings.chunks_exact(d))
                    {
                        for (pk, bk) in p.iter_mut().zip(b.chunks_exact(d)) {
                            *pk = dot1(bk, e);
                        }
                    }
                    sc.proj_b.clear();
                    sc.proj_b.extend_from_slice(b);
                }
                let q = basis.unwrap_or(&[]);
                let mut u = [0f32; 16];
                for (uk, ak) in u.iter_mut().zip(a.chunks_exact(d)) {
                    *uk = scale * dot1(ak, q);
                }
                let u = &u[..r];
                for ((t, &s), p) in sc
                    .s_taste
                    .iter_mut()
                    .zip(&sc.s_query)
                    .zip(sc.proj.chunks_exact(r))
                {
                    *t = s + u.iter().zip(p).map(|(x, y)| x * y).sum::<f32>();
                }
            }
            if weights[CF] > 0.0 {
                sc.pairs.clear();
                for (i, &s) in sc.s_taste.iter().enumerate() {
                    if !sc.excluded[i] {
                        top_push(&mut sc.pairs, depth, (s, i as u32));
                    }
                }
                sort_pairs(&mut sc.pairs);
                ranked(&sc.pairs, &mut sc.lists[CF]);
            }
        }

        // content: word matches first, then the query embedding.
        let qwords = req.text.map(query_words).unwrap_or_default();
        let title_seeds = self.lexical(&qwords, seeks_titles(req.route));
        let sc = &mut self.scratch;
        if weights[CONTENT] > 0.0 {
            let has_query = req.query.is_some();
            // Word-match score first; equal scores by the query embedding's match.
            let mut matched: Vec<(f32, u32)> = sc
                .sparse_touched
                .iter()
                .filter(|&&i| !sc.excluded[i as usize] && sc.sparse[i as usize] > 0.0)
                .map(|&i| (sc.sparse[i as usize], i))
                .collect();
            sort_pairs(&mut matched);
            if has_query {
                let mut start = 0;
                while start < matched.len() {
                    let mut end = start + 1;
                    while end < matched.len() && matched[end].0 == matched[start].0 {
                        end += 1;
                    }
                    if end - start > 1 {
                        let run = &mut matched[start..end];
                        let lex = run[0].0;
                        run.iter_mut().for_each(|p| p.0 = sc.s_query[p.1 as usize]);
                        sort_pairs(run);
                        run.iter_mut().for_each(|p| p.0 = lex);
                    }
                    start = end;
                }
            }
            matched.truncate(depth);
            let list = &mut sc.lists[CONTENT];
            list.extend(
                matched
                    .iter()
                    .enumerate()
                    .map(|(r, &(_, i))| (i, r as u32 + 1)),
            );
            if has_query && list.len() < depth {
                let rest = depth - list.len();
                sc.pairs.clear();
                for (i, &s) in sc.s_query.iter().enumerate() {
                    if !sc.excluded[i] && sc.sparse[i] <= 0.0 {
                        top_push(&mut sc.pairs, rest, (s, i as u32));
                    }
                }
                sort_pairs(&mut sc.pairs);
                let base = list.len() as u32;
                list.extend(
                    sc.pairs
                        .iter()
                        .enumerate()
                        .map(|(r, &(_, i))| (i, base + r as u32 + 1)),
                );
            }
        }
        for &i in &sc.sparse_touched {
            sc.sparse[i as usize] = 0.0;
        }
        sc.sparse_touched.clear();

        // graph: neighbours of recent titles (and of titles the query names).
        let mut seeds: Vec<(u32, f32, bool)> = recent.iter().map(|&(i, w)| (i, w, false)).collect();
        if req.route == Some(Route::GnnSimilarity) {
            for &i in &title_seeds {
                seeds.push((i, 1.0, true));
            }
        }
        if weights[GRAPH] > 0.0 && !seeds.is_empty() {
            self.graph_list(&seeds, depth);
        }

        // context: the viewer's genre lift in this slot / day / device.
        let ctx_lift = match req.context {
            Some(c) if weights[CONTEXT] > 0.0 && !c.is_empty() => self.context_lift(history, &c),
            _ => None,
        };
        let sc = &mut self.scratch;
        if let Some(lift) = &ctx_lift {
            sc.pairs.clear();
            for (i, gs) in self.item_genres.iter().enumerate() {
                if gs.is_empty() || sc.excluded[i] {
                    continue;
                }
                let s = gs.iter().map(|&g| lift[g as usize].0).sum::<f32>() / gs.len() as f32;
                if s >= MIN_CONTEXT_LIFT {
                    top_push(&mut sc.pairs, depth, (s, i as u32));
                }
            }
            sort_pairs(&mut sc.pairs);
            ranked(&sc.pairs, &mut sc.lists[CONTEXT]);
        }

        // fresh: newest first; ties share a rank, a tie group is never cut.
        if weights[FRESH] > 0.0 {
            let list = &mut sc.lists[FRESH];
            let mut pos = 0u32;
            let mut rank = 0u32;
            let mut prev: Option<u16> = None;
            for &i in &self.fresh_order {
                if sc.excluded[i as usize] {
                    continue;
                }
                let y = self.items[i as usize].year;
                if prev != y {
                    if pos as usize >= depth {
                        break;
                    }
                    rank = pos + 1;
                    prev = y;
                }
                list.push((i, rank));
                pos += 1;
            }
        }

        // ---- weighted RRF ----
        let rrf_k = self.cfg.k;
        for (role, list) in sc.lists.iter().enumerate() {
            let w = weights[role];
            if w == 0.0 {
                continue;
            }
            for &(i, r) in list {
                let f = &mut sc.fused[i as usize];
                if *f == 0.0 {
                    sc.fused_touched.push(i);
                }
                *f += rrf_term(w, rrf_k, r as usize);
            }
        }
        sc.pairs.clear();
        sc.pairs
            .extend(sc.fused_touched.iter().map(|&i| (sc.fused[i as usize], i)));
        for &i in &sc.fused_touched {
            sc.fused[i as usize] = 0.0;
        }
        sc.fused_touched.clear();
        keep_top(&mut sc.pairs, req.k);
        let mut top: Vec<(f32, u32)> = sc.pairs.clone();
        // Fewer candidates than k: fill with the newest titles, then catalog order.
        if top.len() < req.k.min(n - req.exclude.len().min(n)) {
            let mut taken = vec![false; n];
            for &(_, i) in &top {
                taken[i as usize] = true;
            }
            let rest = self
                .fresh_order
                .iter()
                .copied()
                .chain((0..n as u32).filter(|&i| self.items[i as usize].year.is_none()));
            for i in rest {
                if top.len() >= req.k {
                    break;
                }
                if !taken[i as usize] && !sc.excluded[i as usize] {
                    top.push((0.0, i));
                }
            }
        }
        for &i in req.exclude {
            sc.excluded[i as usize] = false;
        }

        // ---- explanations ----
        let now_year = year_of(req.now);
        let c = req.context.unwrap_or_default();
        let phrases: [&str; 4] = [
            "",
            c.hour_of_day.map_or("", |h| SLOT_NAMES[slot(h)]),
            c.day_of_week.map_or("", |d| DAY_NAMES[d as usize]),
            c.device.map_or("", device_phrase),
        ];
        let mut out = Vec::with_capacity(top.len());
        for &(score, i) in &top {
            let mut contributions: Vec<Contribution> = Vec::new();
            for (role, list) in self.scratch.lists.iter().enumerate() {
                let w = weights[role];
                if w == 0.0 {
                    continue;
                }
                if let Some(&(_, r)) = list.iter().find(|e| e.0 == i) {
                    contributions.push(Contribution {
                        role: ROLES[role].to_string(),
                        rank: r as usize,
                        value: rrf_term(w, rrf_k, r as usize),
                    });
                }
            }
            // Largest first (at most five: an insertion sort; ties keep role order).
            for j in 1..contributions.len() {
                let mut k = j;
                while k > 0 && contributions[k].value > contributions[k - 1].value {
                    contributions.swap(k, k - 1);
                    k -= 1;
                }
            }
            let (query_score, personal_score) = if has_basis {
                let (q, t) = (
                    self.scratch.s_query[i as usize],
                    self.scratch.s_taste[i as usize],
                );
                (Some(q), Some(t - q))
            } else {
                (None, None)
            };
            let explanation = self.explain(
                i,
                &contributions,
                &qwords,
                seeks_titles(req.route),
                &seeds,
                ctx_lift.as_deref().map(|l| (l, &phrases)),
                now_year,
                personal_score,
                req.query.is_some(),
            );
            out.push(DeviceRec {
                item: i,
                score,
                contributions,
                explanation,
                query_score,
                personal_score,
            });
        }
        Ok(DeviceRanking {
            weights,
            items: out,
        })
    }

    /// The viewer's profile into `scratch.profile`: the weighted mean embedding of the
    /// recent titles with a positive signal. False when there is none.
    fn profile_into(&mut self, recent: &[(u32, f32)]) -> bool {
        let d = self.d;
        let p = &mut self.scratch.profile;
        p.iter_mut().for_each(|x| *x = 0.0);
        let mut total = 0.0f32;
        for &(i, w) in recent {
            if w <= 0.0 {
                continue;
            }
            total += w;
            let e = &self.embeddings[i as usize * d..(i as usize + 1) * d];
            for (x, &v) in p.iter_mut().zip(e) {
                *x += w * v;
            }
        }
        if total > 0.0 {
            p.iter_mut().for_each(|x| *x /= total);
        }
        total > 0.0
    }

    /// Word-match scores into `scratch.sparse` (touched items in `sparse_touched`):
    /// IDF-weighted cosine between the query's words and each title's genre, year and
    /// (when `titles`) title-word features. Returns the titles the query names best
    /// (title words only; at most 3 within half of the best), for graph seeds.
    fn lexical(&mut self, qwords: &[String], titles: bool) -> Vec<u32> {
        let sc = &mut self.scratch;
        let mut seeds = Vec::new();
        if qwords.is_empty() {
            return seeds;
        }
        let norm = if titles {
            &self.lex_norm
        } else {
            &self.lex_norm_no_title
        };
        let add = |i: u32, v: f32, sc: &mut Scratch| {
            let s = &mut sc.sparse[i as usize];
            if *s == 0.0 {
                sc.sparse_touched.push(i);
            }
            let nn = norm[i as usize];
            if nn > 0.0 {
                *s += v / nn;
            }
        };
        if titles {
            // Query words are distinct, so are their ids.
            for w in qwords
                .iter()
                .filter_map(|w| self.title_vocab.get(w).copied())
            {
                let v = self.title_idf[w as usize].powi(2);
                for &i in &self.title_items[w as usize] {
                    add(i, v, sc);
                }
            }
            // Title-only scores are what is in `sparse` now.
            let mut named: Vec<(f32, u32)> = sc
                .sparse_touched
                .iter()
                .map(|&i| (sc.sparse[i as usize], i))
                .collect();
            keep_top(&mut named, 3);
            if let Some(&(best, _)) = named.first() {
                seeds.extend(named.iter().filter(|p| p.0 >= 0.5 * best).map(|p| p.1));
            }
        }
        for (g, gw) in self.genre_words.iter().enumerate() {
            if !gw.is_empty() && gw.iter().all(|w| qwords.contains(w)) {
                let v = self.genre_idf[g].powi(2);
                for &i in &self.genre_items[g] {
                    add(i, v, sc);
                }
            }
        }
        for w in qwords {
            if let Some(y) = as_year(w) {
                let y = (y - YEAR0) as usize;
                let v = self.year_idf[y].powi(2);
                for &i in &self.year_items[y] {
                    add(i, v, sc);
                }
            }
        }
        seeds
    }

    /// The graph list from weighted seeds (positive: liked; negative: skipped).
    fn graph_list(&mut self, seeds: &[(u32, f32, bool)], depth: usize) {
        for &(s, w, _) in seeds {
            if w == 0.0 {
                continue;
            }
            // Borrow dance: fetch the list (possibly computing it), then accumulate.
            let list: Vec<(u32, f32)> = self.neighbours(s).to_vec();
            let sc = &mut self.scratch;
            for (j, sim) in list {
                let x = &mut sc.sparse[j as usize];
                if *x == 0.0 {
                    sc.sparse_touched.push(j);
                }
                *x += w * sim;
            }
        }
        let sc = &mut self.scratch;
        sc.pairs.clear();
        for &j in &sc.sparse_touched {
            let v = sc.sparse[j as usize];
            let is_seed = seeds.iter().any(|s| s.0 == j);
            if v > 0.0 && !sc.excluded[j as usize] && !is_seed {
                top_push(&mut sc.pairs, depth, (v, j));
            }
            sc.sparse[j as usize] = 0.0;
        }
        sc.sparse_touched.clear();
        sort_pairs(&mut sc.pairs);
        ranked(&sc.pairs, &mut sc.lists[GRAPH]);
    }

    /// Per genre: (summed log lift over the given context factors, best factor's
    /// phrase index). `None` when the viewer has no liked title with a known genre.
    /// Genre weights of a title are split evenly over its genres.
    fn context_lift(&self, history: &ViewerHistory, ctx: &DeviceContext) -> Option<Vec<(f32, u8)>> {
        const ALPHA: f32 = 2.0; // prior mass of P(g) in P(g | factor)
        let g_n = self.genre_names.len();
        if g_n == 0 {
            return None;
        }
        // counts: [overall, slot, day, device] per genre, and totals.
        let mut cnt = vec![[0f32; 4]; g_n];
        let mut tot = [0f32; 4];
        for ev in &history.events {
            if ev.strength <= 0.0 {
                continue;
            }
            let Some(i) = self.index_of(&ev.item) else {
                continue;
            };
            let gs = &self.item_genres[i as usize];
            if gs.is_empty() {
                continue;
            }
            let w = ev.strength / gs.len() as f32;
            let same = [
                true,
                matches!((ev.context.hour_of_day, ctx.hour_of_day), (Some(a), Some(b)) if slot(a) == slot(b)),
                matches!((ev.context.day_of_week, ctx.day_of_week), (Some(a), Some(b)) if a == b),
                matches!((ev.context.device, ctx.device), (Some(a), Some(b)) if a == b),
            ];
            for (f, &hit) in same.iter().enumerate() {
                if hit {
                    tot[f] += ev.strength;
                    for &g in gs {
                        cnt[g as usize][f] += w;
                    }
                }
            }
        }
        if tot[0] == 0.0 {
            return None;
        }
        let given = [
            false,
            ctx.hour_of_day.is_some(),
            ctx.day_of_week.is_some(),
            ctx.device.is_some(),
        ];
        Some(
            (0..g_n)
                .map(|g| {
                    let p = cnt[g][0] / tot[0];
                    if p == 0.0 {
                        return (0.0, 0);
                    }
                    let mut sum = 0.0f32;
                    let mut best = (f32::NEG_INFINITY, 0u8);
                    for f in 1..4 {
                        if !given[f] {
                            continue;
                        }
                        let pf = (cnt[g][f] + ALPHA * p) / (tot[f] + ALPHA);
                        let lift = (pf / p).ln();
                        sum += lift;
                        if lift > best.0 {
                            best = (lift, f as u8);
                        }
                    }
                    (sum, best.1)
                })
                .collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn explain(
        &mut self,
        i: u32,
        contributions: &[Contribution],
        qwords: &[String],
        titles: bool,
        seeds: &[(u32, f32, bool)],
        ctx_lift: Option<ContextWhy<'_>>,
        now_year: i64,
        personal: Option<f32>,
        query_given: bool,
    ) -> String {
        for c in contributions {
            let role = ROLES.iter().position(|r| *r == c.role).unwrap_or(CF);
            match role {
                GRAPH => {
                    // The seed whose neighbour list gives i the largest positive share.
                    let mut best: Option<(f32, u32, bool)> = None;
                    for &(s, w, named) in seeds {
                        if w <= 0.0 {
                            continue;
                        }
                        let sim = self
                            .neighbours(s)
                            .iter()
                            .find(|e| e.0 == i)
                            .map_or(0.0, |e| e.1);
                        let v = w * sim;
                        if v > 0.0 && best.is_none_or(|b| v > b.0) {
                            best = Some((v, s, named));
                        }
                    }
                    if let Some((_, s, named)) = best {
                        let t = &self.items[s as usize].title;
                        return if named {
                            format!("Similar to {t}")
                        } else {
                            format!("Because you watched {t}")
                        };
                    }
                }
                FRESH => {
                    if let Some(y) = self.items[i as usize].year {
                        return if i64::from(y) >= now_year {
                            "New this year".to_string()
                        } else if i64::from(y) == now_year - 1 {
                            "New last year".to_string()
                        } else {
                            format!("Among the newest titles ({y})")
                        };
                    }
                }
                CONTENT => {
                    let m = self.matched_words(i, qwords, titles);
                    if !m.is_empty() {
                        return format!("Matches {}", m.join(", "));
                    }
                    return "Matches your search".to_string();
                }
                CONTEXT => {
                    if let Some((lift, phrases)) = ctx_lift {
                        let best = self.item_genres[i as usize]
                            .iter()
                            .map(|&g| (lift[g as usize], g))
                            .max_by(|a, b| a.0 .0.total_cmp(&b.0 .0).then(b.1.cmp(&a.1)));
                        if let Some(((_, f), g)) = best {
                            return format!(
                                "You often watch {} {}",
                                self.genre_names[g as usize], phrases[f as usize]
                            );
                        }
                    }
                }
                _ => match personal {
                    Some(p) if p > 1e-4 => return format!("Fits your taste (+{p:.2})"),
                    // Without a learned lift, cf is the query match itself: let content say so.
                    _ if query_given => {}
                    _ => return "Fits your taste".to_string(),
                },
            }
        }
        if query_given && !contributions.is_empty() {
            "Matches your search".to_string()
        } else if let Some(y) = self.items[i as usize].year {
            format!("Among the newest titles ({y})")
        } else {
            "From the catalog".to_string()
        }
    }

    /// The query words (as the user typed them) that match title i's genres, year or title.
    fn matched_words(&self, i: u32, qwords: &[String], titles: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for &g in &self.item_genres[i as usize] {
            let gw = &self.genre_words[g as usize];
            if !gw.is_empty() && gw.iter().all(|w| qwords.contains(w)) {
                out.push(self.genre_names[g as usize].clone());
            }
        }
        if let Some(y) = self.items[i as usize].year {
            if qwords.iter().any(|w| as_year(w) == Some(y)) {
                out.push(y.to_string());
            }
        }
        if titles {
            for &w in &self.item_words[i as usize] {
                let word = &self.title_words[w as usize];
                if qwords.contains(word) {
                    out.push(format!("“{word}”"));
                }
            }
        }
        out
    }
}

/// The distinct folded query words minus filler words, in query order.
fn query_words(text: &str) -> Vec<String> {
    let mut ws: Vec<String> = Vec::new();
    for w in folded(text) {
        if w.chars().count() >= 2 && !FILLER.contains(&w.as_str()) && !ws.contains(&w) {
            ws.push(w);
        }
    }
    ws
}

fn as_year(w: &str) -> Option<u16> {
    if w.len() == 4 {
        w.parse::<u16>()
            .ok()
            .filter(|y| (YEAR0..=YEAR1).contains(y))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::personalize::{BaseProjection, GlobalAdapter, PersonalizeConfig};

    const D: usize = 8;
    /// 2024-06-01 00:00 UTC.
    const JUNE_2024: i64 = 1_717_200_000;

    /// (title, year, genres, direction): embedding = unit vector on `direction` plus a
    /// small item-specific offset on the last axis.
    const CAT: [(&str, u16, &[&str], usize); 12] = [
        ("Heat", 1995, &["Action", "Crime"], 0),
        ("Ronin", 1998, &["Action", "Crime"], 0),
        ("Fargo", 1996, &["Crime", "Drama"], 1),
        ("Airplane", 1980, &["Comedy"], 2),
        ("Clueless", 1995, &["Comedy", "Romance"], 2),
        ("Groundhog Day", 1993, &["Comedy", "Romance"], 2),
        ("Scream", 1996, &["Horror"], 3),
        ("Alien", 1979, &["Horror", "Sci-Fi"], 3),
        ("Halloween", 1978, &["Horror"], 3),
        ("Babe", 1995, &["Children's", "Comedy"], 4),
        ("Contact", 1997, &["Drama", "Sci-Fi"], 5),
        ("Brand New Thing", 2024, &["Documentary"], 6),
    ];

    fn embedding(i: usize) -> Vec<f32> {
        let mut e = vec![0.0; D];
        e[CAT[i].3] = 1.0;
        e[D - 1] = 0.05 * i as f32;
        e
    }

    fn ranker() -> DeviceRanker {
        let items = CAT
            .iter()
            .enumerate()
            .map(|(i, (t, y, g, _))| DeviceItem {
                id: format!("m{i}"),
                title: t.to_string(),
                genres: g.iter().map(|s| s.to_string()).collect(),
                year: Some(*y),
            })
            .collect();
        let emb = (0..CAT.len()).flat_map(embedding).collect();
        DeviceRanker::new(D, items, emb, vec![]).unwrap()
    }

    fn adapters() -> (Adapter, Adapter, PersonalizeConfig) {
        let cfg = PersonalizeConfig {
            d: D,
            rank: 4,
            ..Default::default()
        };
        let base = Arc::new(BaseProjection::identity(D));
        let global = Arc::new(GlobalAdapter::zero(&cfg));
        let a = Adapter::new("t", &cfg, base.clone(), global.clone()).unwrap();
        let s = Adapter::new("t", &cfg, base, global).unwrap();
        (a, s, cfg)
    }

    fn ids(r: &DeviceRanking) -> Vec<u32> {
        r.items.iter().map(|x| x.item).collect()
    }

    fn pos(r: &DeviceRanking, i: u32) -> usize {
        r.items
            .iter()
            .position(|x| x.item == i)
            .unwrap_or(usize::MAX)
    }

    fn run(
        m: &mut DeviceRanker,
        h: &ViewerHistory,
        route: Option<Route>,
        text: Option<&str>,
        q: Option<&[f32]>,
        context: Option<DeviceContext>,
        exclude: &[u32],
    ) -> DeviceRanking {
        let (a, s, _) = adapters();
        let req = DeviceRequest {
            route,
            text,
            query: q,
            context,
            exclude,
            k: 12,
            now: JUNE_2024,
        };
        m.recommend(&req, &a, &s, h).unwrap()
    }

    #[test]
    fn heap_selection_matches_a_full_sort() {
        let mut r = crate::rng::Rng::new(9);
        for len in [0usize, 1, 2, 7, 100, 1000] {
            // Few distinct scores: many ties, broken by index.
            let v: Vec<(f32, u32)> = (0..len as u32).map(|i| (r.below(20) as f32, i)).collect();
            let mut want = v.clone();
            want.sort_by(by_score);
            for depth in [0usize, 1, 3, 50, 2000] {
                let mut a = v.clone();
                keep_top(&mut a, depth);
                assert_eq!(a, want[..depth.min(len)], "len {len} depth {depth}");
                let mut h = Vec::new();
                for &p in &v {
                    top_push(&mut h, depth, p);
                }
                sort_pairs(&mut h);
                assert_eq!(h, want[..depth.min(len)], "len {len} depth {depth}");
            }
            let mut s = v.clone();
            sort_pairs(&mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn lane_dots_match_a_plain_sum() {
        let mut r = crate::rng::Rng::new(4);
        for n in [0usize, 3, 8, 13, 64, 385] {
            let v = |r: &mut crate::rng::Rng| {
                (0..n).map(|_| r.uniform(-1.0, 1.0)).collect::<Vec<f32>>()
            };
            let (a, b, e) = (v(&mut r), v(&mut r), v(&mut r));
            let naive = |x: &[f32]| {
                x.iter()
                    .zip(&e)
                    .map(|(p, q)| *p as f64 * *q as f64)
                    .sum::<f64>()
            };
            assert!((dot1(&a, &e) as f64 - naive(&a)).abs() < 1e-4, "n {n}");
            assert!((dot1(&b, &e) as f64 - naive(&b)).abs() < 1e-4, "n {n}");
        }
    }

    #[test]
    fn taste_scores_equal_the_adapted_dot_product_as_the_viewer_tier_learns() {
        use crate::personalize::{InteractionKind, Observation, ViewerInteraction};
        let mut m = ranker();
        let cfg = PersonalizeConfig {
            d: D,
            rank: 4,
            min_interactions: 1,
            min_interval_secs: 0,
            min_signal: 0.0,
            ..Default::default()
        };
        let base = Arc::new(BaseProjection::identity(D));
        let global = Arc::new(GlobalAdapter::zero(&cfg));
        let mut a = Adapter::new("t", &cfg, base.clone(), global.clone()).unwrap();
        let s = Adapter::new("t", &cfg, base, global).unwrap();
        let mut rng = crate::rng::Rng::new(1);
        let q = embedding(3);
        let h = ViewerHistory::default();
        let req = DeviceRequest {
            query: Some(&q),
            k: 12,
            now: JUNE_2024,
            ..Default::default()
        };
        let mut learned = Vec::new();
        for (round, item) in [6u32, 8].into_iter().enumerate() {
            let x = ViewerInteraction::new(InteractionKind::WatchComplete, format!("m{item}"));
            let emb = m.embeddings().to_vec();
            a.update_from_interaction(
                &x,
                100 + round as i64,
                Observation {
                    query: &q,
                    item: m.embedding(item),
                },
                &emb,
                &mut rng,
            )
            .unwrap();
            assert!(a.viewer_tier().1.iter().any(|&b| b != 0.0), "no learning");
            let r = m.recommend(&req, &a, &s, &h).unwrap();
            let (y, _) = a.adapt_embedding(&q).unwrap();
            let (ys, _) = s.adapt_embedding(&q).unwrap();
            for x in &r.items {
                let e = m.embedding(x.item);
                let want = dot1(&y, e) - dot1(&ys, e);
                let got = x.personal_score.unwrap();
                assert!((got - want).abs() < 1e-5, "round {round}: {got} vs {want}");
                assert!((x.query_score.unwrap() - dot1(&ys, e)).abs() < 1e-6);
            }
            learned.push(
                r.items
                    .iter()
                    .map(|x| x.personal_score.unwrap())
                    .sum::<f32>(),
            );
        }
        // The second round changed the tier, and the cached projections followed it.
        assert_ne!(learned[0], learned[1]);
    }

    #[test]
    fn calendar_years() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(JUNE_2024), 2024);
        assert_eq!(year_of(1_704_067_199), 2023); // 2023-12-31 23:59:59
        assert_eq!(year_of(1_704_067_200), 2024);
        assert_eq!(year_of(-1), 1969);
        assert_eq!(year_of(951_782_400), 2000); // 2000-02-29
    }

    #[test]
    fn scores_are_the_weighted_rrf_of_the_listed_ranks() {
        let mut m = ranker();
        let mut h = ViewerHistory::default();
        h.record("m2", 1.0, DeviceContext::default(), 1).unwrap();
        let q = embedding(0);
        let ctx = DeviceContext {
            hour_of_day: Some(20),
            ..Default::default()
        };
        for route in [
            None,
            Some(Route::CatalogFreshness),
            Some(Route::GnnSimilarity),
        ] {
            let r = run(&mut m, &h, route, Some("heat"), Some(&q), Some(ctx), &[3]);
            let w = route_weights(route);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert_eq!(r.weights, w);
            assert!(
                r.items.iter().all(|x| x.item != 3),
                "excluded item returned"
            );
            for x in &r.items {
                let sum: f32 = x.contributions.iter().map(|c| c.value).sum();
                assert!((sum - x.score).abs() < 1e-6, "{x:?}");
                for c in &x.contributions {
                    let role = ROLES.iter().position(|r| *r == c.role).unwrap();
                    assert!((c.value - w[role] / (60.0 + c.rank as f32)).abs() < 1e-7);
                }
            }
            for p in r.items.windows(2) {
                assert!(p[0].score >= p[1].score);
            }
        }
        // Default weights are the spec's.
        assert_eq!(route_weights(None), [0.3, 0.2, 0.4, 0.1, 0.0]);
    }

    #[test]
    fn freshness_route_puts_the_newest_title_first() {
        let mut m = ranker();
        let h = ViewerHistory::default();
        let q = embedding(6); // horror: every match is from the 1970s-90s
        let hybrid = run(
            &mut m,
            &h,
            Some(Route::PersonalizedHybrid),
            None,
            Some(&q),
            None,
            &[],
        );
        let fresh = run(
            &mut m,
            &h,
            Some(Route::CatalogFreshness),
            None,
            Some(&q),
            None,
            &[],
        );
        assert!(pos(&hybrid, 11) > 2, "{:?}", ids(&hybrid));
        assert_eq!(
            hybrid.items[0].item, 8,
            "query match first without freshness: {hybrid:#?}"
        );
        assert_eq!(fresh.items[0].item, 11, "{:?}", ids(&fresh));
        assert_eq!(fresh.items[0].explanation, "New this year");
        // Title 1 (1998) is the newest action title: above the older query matches.
        assert!(pos(&fresh, 1) < pos(&fresh, 0));
        // A catalog a year later says "New last year".
        let (a, s, _) = adapters();
        let later = m
            .recommend(
                &DeviceRequest {
                    route: Some(Route::CatalogFreshness),
                    query: Some(&q),
                    k: 1,
                    now: JUNE_2024 + 366 * 86_400,
                    ..Default::default()
                },
                &a,
                &s,
                &h,
            )
            .unwrap();
        assert_eq!(later.items[0].explanation, "New last year");
    }

    #[test]
    fn on_a_large_catalog_the_freshness_route_sorts_the_newest_year_first() {
        // 2 000 random titles, years 1950..=2024 (about 27 per year): every strategy lists
        // only its best 100, so the newest year's titles lead, ordered by the others.
        let n = 2000;
        let mut rng = crate::rng::Rng::new(5);
        let items: Vec<DeviceItem> = (0..n)
            .map(|i| DeviceItem {
                id: format!("t{i}"),
                title: format!("Title {i}"),
                genres: vec![["Drama", "Comedy", "Horror"][i % 3].to_string()],
                year: Some(1950 + rng.below(75) as u16),
            })
            .collect();
        let emb: Vec<f32> = (0..n * D).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let newest = items.iter().filter(|x| x.year == Some(2024)).count();
        assert!(newest >= 12, "{newest}"); // k = 12 below
        let mut m = DeviceRanker::new(D, items, emb, vec![]).unwrap();
        let mut h = ViewerHistory::default();
        let ctx = DeviceContext {
            hour_of_day: Some(21),
            ..Default::default()
        };
        for i in 0..6 {
            h.record(&format!("t{}", i * 7), 1.0, ctx, i).unwrap();
        }
        let q: Vec<f32> = (0..D).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let fresh = run(
            &mut m,
            &h,
            Some(Route::CatalogFreshness),
            None,
            Some(&q),
            Some(ctx),
            &[],
        );
        let hybrid = run(&mut m, &h, None, None, Some(&q), Some(ctx), &[]);
        let year = |r: &DeviceRanking| -> Vec<u16> {
            r.items
                .iter()
                .map(|x| m.item(x.item).year.unwrap())
                .collect()
        };
        assert!(
            year(&fresh).iter().all(|&y| y == 2024),
            "{:?}",
            year(&fresh)
        );
        assert!(
            year(&hybrid).iter().filter(|&&y| y == 2024).count() < 6,
            "{:?}",
            year(&hybrid)
        );
        // Among the newest, the taste / query strategies decide the order.
        assert!(fresh.items[0].contributions.len() > 1);
        assert_eq!(fresh.items[0].explanation, "New this year");
    }

    #[test]
    fn a_watched_titles_neighbour_rises_and_a_skip_does_not_lift() {
        let mut m = ranker();
        let q = embedding(3); // the viewer searches for comedy
        let none = ViewerHistory::default();
        let before = run(&mut m, &none, None, None, Some(&q), None, &[]);
        // Watching Heat (0): its neighbour Ronin (1) rises and says why.
        let mut h = ViewerHistory::default();
        h.record("m0", 1.0, DeviceContext::default(), 10).unwrap();
        let after = run(&mut m, &h, None, None, Some(&q), None, &[0]);
        assert!(
            pos(&after, 1) < pos(&before, 1),
            "{:?} vs {:?}",
            ids(&before),
            ids(&after)
        );
        let ronin = &after.items[pos(&after, 1)];
        assert_eq!(ronin.explanation, "Because you watched Heat");
        assert_eq!(ronin.contributions[0].role, "graph");
        assert_eq!(ronin.contributions[0].rank, 1);
        // Skipping Heat instead lifts nothing.
        let mut s = ViewerHistory::default();
        s.record("m0", -0.6, DeviceContext::default(), 10).unwrap();
        let skipped = run(&mut m, &s, None, None, Some(&q), None, &[0]);
        assert!(skipped
            .items
            .iter()
            .all(|x| x.contributions.iter().all(|c| c.role != "graph")));
        assert!(pos(&skipped, 1) > pos(&after, 1));
        // Without a query embedding the profile (Heat) stands in for the taste strategy.
        let profile = run(&mut m, &h, None, None, None, None, &[0]);
        assert_eq!(profile.items[0].item, 1);
        assert!(profile.items[0].query_score.is_some());
        // Host-supplied related lists replace the embedding neighbours.
        let items = (0..CAT.len()).map(|i| m.item(i as u32).clone()).collect();
        let rel = vec![("m0".to_string(), vec![("m9".to_string(), 5.0)])]; // Heat → Babe, co-watched
        let mut m2 = DeviceRanker::new(D, items, m.embeddings().to_vec(), rel).unwrap();
        let r = run(&mut m2, &h, None, None, None, None, &[0]);
        assert_eq!(r.items[0].item, 9);
        assert_eq!(r.items[0].explanation, "Because you watched Heat");
    }

    #[test]
    fn context_changes_the_ranking() {
        let mut m = ranker();
        let mut h = ViewerHistory::default();
        let at = |hour| DeviceContext {
            hour_of_day: Some(hour),
            day_of_week: Some(4),
            device: Some(Device::Tv),
        };
        // Comedies in the evening, horror in the morning.
        h.record("m3", 1.0, at(21), 1).unwrap();
        h.record("m4", 1.0, at(22), 2).unwrap();
        h.record("m6", 1.0, at(9), 3).unwrap();
        h.record("m7", 1.0, at(10), 4).unwrap();
        let seen = [3, 4, 6, 7];
        let route = Some(Route::MoodMatching);
        let evening = run(&mut m, &h, route, None, None, Some(at(20)), &seen);
        let morning = run(&mut m, &h, route, None, None, Some(at(8)), &seen);
        assert_ne!(ids(&evening), ids(&morning));
        let has_ctx = |r: &DeviceRanking, i: u32| {
            r.items[pos(r, i)]
                .contributions
                .iter()
                .any(|c| c.role == "context")
        };
        // Groundhog Day (comedy) and Halloween (horror): context backs each at its time only.
        assert!(has_ctx(&evening, 5) && !has_ctx(&morning, 5));
        assert!(has_ctx(&morning, 8) && !has_ctx(&evening, 8));
        assert!(pos(&evening, 5) < pos(&morning, 5));
        assert!(pos(&morning, 8) < pos(&evening, 8));
        // A viewer who watches everything in one context gets no lift from it.
        let mut same = ViewerHistory::default();
        for i in ["m3", "m4", "m6", "m7"] {
            same.record(i, 1.0, at(21), 1).unwrap();
        }
        let r = run(&mut m, &same, route, None, None, Some(at(21)), &seen);
        assert!(r
            .items
            .iter()
            .all(|x| x.contributions.iter().all(|c| c.role != "context")));
        // Without a context the strategy is silent.
        let plain = run(&mut m, &h, route, None, None, None, &seen);
        assert!(plain
            .items
            .iter()
            .all(|x| x.contributions.iter().all(|c| c.role != "context")));
        // Explanations name the genre and the factor.
        let ctx_only = run(
            &mut m,
            &h,
            route,
            None,
            None,
            Some(DeviceContext {
                hour_of_day: Some(20),
                ..Default::default()
            }),
            &seen,
        );
        let why: Vec<&str> = ctx_only
            .items
            .iter()
            .map(|x| x.explanation.as_str())
            .collect();
        assert!(
            ctx_only
                .items
                .iter()
                .any(|x| x.contributions[0].role == "context"
                    && x.explanation == "You often watch Comedy at night"),
            "{why:?}"
        );
    }

    #[test]
    fn query_words_match_genres_years_and_named_titles() {
        let mut m = ranker();
        let h = ViewerHistory::default();
        // "like heat" on the similar-items route: Heat seeds the graph.
        let r = run(
            &mut m,
            &h,
            Some(Route::GnnSimilarity),
            Some("movies like Heat"),
            None,
            None,
            &[],
        );
        assert_eq!(r.items[0].item, 1, "{:?}", ids(&r));
        assert_eq!(r.items[0].explanation, "Similar to Heat");
        // Genre words (plural folded) and years match on any route; title words only on
        // title-seeking routes.
        let r = run(
            &mut m,
            &h,
            Some(Route::MoodMatching),
            Some("horror movies from 1978"),
            None,
            None,
            &[],
        );
        assert_eq!(r.items[0].item, 8, "{:?}", ids(&r));
        assert_eq!(r.items[0].explanation, "Matches Horror, 1978");
        let r = run(
            &mut m,
            &h,
            Some(Route::MoodMatching),
            Some("some comedies"),
            None,
            None,
            &[],
        );
        let top3: Vec<u32> = ids(&r)[..3].to_vec();
        assert!(
            top3.iter().all(|i| CAT[*i as usize].2.contains(&"Comedy")),
            "{top3:?}"
        );
        let r = run(
            &mut m,
            &h,
            Some(Route::MoodMatching),
            Some("heat"),
            None,
            None,
            &[],
        );
        assert!(
            r.items.iter().all(|x| x.contributions.is_empty()),
            "title words matched off-route"
        );
        let r = run(
            &mut m,
            &h,
            Some(Route::VectorSearch),
            Some("find groundhog day"),
            None,
            None,
            &[],
        );
        assert_eq!(r.items[0].item, 5);
        assert_eq!(r.items[0].explanation, "Matches “groundhog”, “day”");
        assert_eq!(query_words("Where can I watch the Comedies?"), ["comedy"]);
        assert_eq!(
            query_words("heat, more heat and HEAT 1995"),
            ["heat", "1995"]
        );
    }

    #[test]
    fn catalog_size_overflow_is_an_error_not_a_short_table() {
        let items: Vec<DeviceItem> = (0..2)
            .map(|i| DeviceItem {
                id: format!("m{i}"),
                title: "t".into(),
                genres: vec![],
                year: None,
            })
            .collect();
        // 2 × (usize::MAX / 2 + 1) overflows: it must not wrap to a length an empty
        // array matches.
        let d = usize::MAX / 2 + 1;
        let err = DeviceRanker::new(d, items.clone(), vec![], vec![]).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        let err = DeviceRanker::new(3, items, vec![0.0; 5], vec![]).unwrap_err();
        assert!(
            err.to_string().contains("expected 2 items × d 3 = 6"),
            "{err}"
        );
    }

    #[test]
    fn bad_input_is_rejected_and_fill_ins_complete_short_lists() {
        let mut m = ranker();
        let (a, s, cfg) = adapters();
        let h = ViewerHistory::default();
        let ok = DeviceRequest {
            k: 3,
            now: JUNE_2024,
            ..Default::default()
        };
        // No query, no history: the newest titles fill the list, score 0.
        let r = m.recommend(&ok, &a, &s, &h).unwrap();
        assert_eq!(ids(&r), [11, 1, 10]);
        assert!(r
            .items
            .iter()
            .all(|x| x.score == 0.0 && x.contributions.is_empty()));
        assert_eq!(r.items[1].explanation, "Among the newest titles (1998)");
        let bad_q = vec![f32::NAN; D];
        let short = vec![0.0; D - 1];
        let bad = [
            DeviceRequest { k: 0, ..ok.clone() },
            DeviceRequest {
                query: Some(&short),
                ..ok.clone()
            },
            DeviceRequest {
                query: Some(&bad_q),
                ..ok.clone()
            },
            DeviceRequest {
                exclude: &[12],
                ..ok.clone()
            },
            DeviceRequest {
                context: Some(DeviceContext {
                    hour_of_day: Some(24),
                    ..Default::default()
                }),
                ..ok.clone()
            },
            DeviceRequest {
                context: Some(DeviceContext {
                    day_of_week: Some(7),
                    ..Default::default()
                }),
                ..ok.clone()
            },
        ];
        for req in &bad {
            assert!(m.recommend(req, &a, &s, &h).is_err(), "{req:?}");
        }
        let other = PersonalizeConfig { d: 16, ..cfg };
        let g = Arc::new(GlobalAdapter::zero(&other));
        let a16 = Adapter::new("t", &other, Arc::new(BaseProjection::identity(16)), g).unwrap();
        assert!(m.recommend(&ok, &a16, &a16, &h).is_err());
        // A rejected call leaves nothing behind: the next call ranks as before.
        assert_eq!(ids(&m.recommend(&ok, &a, &s, &h).unwrap()), [11, 1, 10]);

        let item = |id: &str| DeviceItem {
            id: id.into(),
            title: "T".into(),
            ..Default::default()
        };
        assert!(DeviceRanker::new(D, vec![], vec![], vec![]).is_err());
        assert!(DeviceRanker::new(D, vec![item("a")], vec![0.0; D - 1], vec![]).is_err());
        assert!(DeviceRanker::new(D, vec![item("a")], vec![f32::INFINITY; D], vec![]).is_err());
        assert!(
            DeviceRanker::new(D, vec![item("a"), item("a")], vec![0.0; 2 * D], vec![]).is_err()
        );
        assert!(DeviceRanker::new(D, vec![item("")], vec![0.0; D], vec![]).is_err());
        let two = vec![item("a"), item("b")];
        let rel =
            |id: &str, other: &str, w: f32| vec![(id.to_string(), vec![(other.to_string(), w)])];
        for r in [
            rel("a", "a", 1.0),
            rel("a", "c", 1.0),
            rel("c", "a", 1.0),
            rel("a", "b", -1.0),
            rel("a", "b", f32::NAN),
        ] {
            assert!(DeviceRanker::new(D, two.clone(), vec![0.0; 2 * D], r).is_err());
        }
        assert!(DeviceRanker::new(D, two, vec![0.0; 2 * D], rel("a", "b", 2.0)).is_ok());

        let mut h = ViewerHistory::default();
        assert!(h
            .record("a", f32::NAN, DeviceContext::default(), 0)
            .is_err());
        for t in 0..(HISTORY_CAP as i64 + 5) {
            h.record("a", 1.0, DeviceContext::default(), t).unwrap();
        }
        assert_eq!(h.len(), HISTORY_CAP);
        assert_eq!(h.events()[0].at, 5);
    }

    #[test]
    fn history_bytes_round_trip_and_reject_damage() {
        let mut h = ViewerHistory::default();
        h.record("m1", 1.0, DeviceContext::default(), -5).unwrap();
        let ctx = DeviceContext {
            hour_of_day: Some(23),
            day_of_week: Some(0),
            device: Some(Device::Tablet),
        };
        h.record("é ü", -0.6, ctx, 1_717_200_000).unwrap();
        let b = h.to_bytes();
        assert_eq!(ViewerHistory::from_bytes(&b).unwrap(), h);
        assert_eq!(
            ViewerHistory::from_bytes(&ViewerHistory::default().to_bytes()).unwrap(),
            ViewerHistory::default()
        );
        for cut in 0..b.len() {
            assert!(ViewerHistory::from_bytes(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(ViewerHistory::from_bytes(&long).is_err());
        let mut dev = b.clone();
        let i = b.len() - 9; // the second event's device byte
        assert_eq!(dev[i], 2);
        dev[i] = 9;
        assert!(ViewerHistory::from_bytes(&dev).is_err());
        let mut hour = b.clone();
        hour[i - 2] = 24;
        assert!(ViewerHistory::from_bytes(&hour).is_err());
        let mut version = b;
        version[0] = 2;
        assert!(ViewerHistory::from_bytes(&version).is_err());
    }
}
