//! What a pattern is: a query embedding, the results that worked for it, who it
//! belongs to and the viewing context it was learned in.
//!
//! Context match (used by [`super::ReasoningBank::find_similar_patterns`]) is
//! defined field by field in [`ContextMatchConfig::matches`]; an unknown field
//! (`None`, or an empty mood set) never rejects a match.

use serde::{Deserialize, Serialize};

/// Stable identifier of a stored pattern.
pub type PatternId = u64;
/// Identifier of a recommended result (catalog item id).
pub type ResultId = u64;

/// Time of day, in four cyclic buckets (local time of the viewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeOfDay {
    /// 05:00–11:59
    Morning = 0,
    /// 12:00–16:59
    Afternoon = 1,
    /// 17:00–21:59
    Evening = 2,
    /// 22:00–04:59
    Night = 3,
}

impl TimeOfDay {
    /// Bucket of a local hour `0..24`; `None` for hours out of range.
    pub fn from_hour(hour: u8) -> Option<Self> {
        match hour {
            5..=11 => Some(Self::Morning),
            12..=16 => Some(Self::Afternoon),
            17..=21 => Some(Self::Evening),
            22..=23 | 0..=4 => Some(Self::Night),
            _ => None,
        }
    }

    /// Cyclic distance in buckets (Night and Morning are adjacent): 0, 1 or 2.
    pub fn distance(self, other: Self) -> u8 {
        let d = (self as i8 - other as i8).unsigned_abs();
        d.min(4 - d)
    }
}

/// Day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DayOfWeek {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl DayOfWeek {
    /// Saturday or Sunday.
    pub fn is_weekend(self) -> bool {
        matches!(self, Self::Saturday | Self::Sunday)
    }
}

/// The device the viewer watches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceType {
    Tv,
    Mobile,
    Tablet,
    Desktop,
}

/// Mood indicators a host can detect or the viewer can state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mood {
    Relaxed = 0,
    Excited = 1,
    Thoughtful = 2,
    Happy = 3,
    Sad = 4,
    Romantic = 5,
    Adventurous = 6,
    Scared = 7,
    Nostalgic = 8,
    Social = 9,
}

impl Mood {
    /// Every mood, in bit order.
    pub const ALL: [Mood; 10] = [
        Mood::Relaxed,
        Mood::Excited,
        Mood::Thoughtful,
        Mood::Happy,
        Mood::Sad,
        Mood::Romantic,
        Mood::Adventurous,
        Mood::Scared,
        Mood::Nostalgic,
        Mood::Social,
    ];
}

/// A set of moods as a bit mask (2 bytes per pattern instead of a list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MoodSet(u16);

impl MoodSet {
    /// The empty set ("mood unknown").
    pub const EMPTY: MoodSet = MoodSet(0);

    /// A set from a list of moods.
    pub fn of(moods: &[Mood]) -> Self {
        MoodSet(moods.iter().fold(0, |m, &x| m | (1 << x as u16)))
    }
    /// Whether `mood` is in the set.
    pub fn contains(self, mood: Mood) -> bool {
        self.0 & (1 << mood as u16) != 0
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether the two sets share a mood.
    pub fn overlaps(self, other: MoodSet) -> bool {
        self.0 & other.0 != 0
    }
    /// A set from a raw bit mask (bits above the last mood are dropped).
    pub fn from_bits(bits: u16) -> Self {
        MoodSet(bits & ((1 << Mood::ALL.len()) - 1))
    }
    /// The raw bit mask (bit `i` = `Mood::ALL[i]`).
    pub fn bits(self) -> u16 {
        self.0
    }
    /// Moods in the set, in bit order.
    pub fn moods(self) -> Vec<Mood> {
        Mood::ALL
            .iter()
            .copied()
            .filter(|&m| self.contains(m))
            .collect()
    }
}

/// The viewing context a pattern was learned in (or a query is made in).
/// `None` means "unknown" and matches anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PatternContext {
    pub time_of_day: Option<TimeOfDay>,
    pub day_of_week: Option<DayOfWeek>,
    pub device: Option<DeviceType>,
    /// Length of the viewing session so far, in minutes.
    pub session_minutes: Option<f32>,
    pub moods: MoodSet,
}

/// Thresholds of the context match. All conditions must hold; each one only
/// applies when both the pattern and the query know that field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextMatchConfig {
    /// Largest cyclic distance between time-of-day buckets that still matches
    /// (1 = same or adjacent bucket).
    pub time_of_day_tolerance: u8,
    /// Require the same device type.
    pub require_same_device: bool,
    /// Require both days to be weekdays or both weekend days.
    pub require_same_day_kind: bool,
    /// Require at least one shared mood when both mood sets are non-empty.
    pub require_mood_overlap: bool,
    /// Largest ratio between the two session lengths (longer / shorter, each
    /// floored at 1 minute); `f32::INFINITY` disables the check.
    pub session_length_max_ratio: f32,
}

impl Default for ContextMatchConfig {
    fn default() -> Self {
        ContextMatchConfig {
            time_of_day_tolerance: 1,
            require_same_device: true,
            require_same_day_kind: true,
            require_mood_overlap: true,
            session_length_max_ratio: 4.0,
        }
    }
}

impl ContextMatchConfig {
    /// Whether a pattern learned in `pattern` applies to a query made in `query`:
    /// - time of day: cyclic bucket distance ≤ `time_of_day_tolerance`;
    /// - device: equal (if `require_same_device`);
    /// - day of week: same weekday/weekend kind (if `require_same_day_kind`);
    /// - moods: non-empty intersection when both sets are non-empty (if `require_mood_overlap`);
    /// - session length: max/min ≤ `session_length_max_ratio` (lengths floored at 1 minute).
    pub fn matches(&self, pattern: &PatternContext, query: &PatternContext) -> bool {
        if let (Some(a), Some(b)) = (pattern.time_of_day, query.time_of_day) {
            if a.distance(b) > self.time_of_day_tolerance {
                return false;
            }
        }
        if self.require_same_device {
            if let (Some(a), Some(b)) = (pattern.device, query.device) {
                if a != b {
                    return false;
                }
            }
        }
        if self.require_same_day_kind {
            if let (Some(a), Some(b)) = (pattern.day_of_week, query.day_of_week) {
                if a.is_weekend() != b.is_weekend() {
                    return false;
                }
            }
        }
        if self.require_mood_overlap
            && !pattern.moods.is_empty()
            && !query.moods.is_empty()
            && !pattern.moods.overlaps(query.moods)
        {
            return false;
        }
        if let (Some(a), Some(b)) = (pattern.session_minutes, query.session_minutes) {
            let (a, b) = (a.max(1.0), b.max(1.0));
            if a.max(b) / a.min(b) > self.session_length_max_ratio {
                return false;
            }
        }
        true
    }
}

/// A stored pattern, as returned by [`super::ReasoningBank::get`].
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub id: PatternId,
    /// Unit-normalized query embedding (cosine similarity = dot product).
    pub query_embedding: Vec<f32>,
    pub successful_results: Vec<ResultId>,
    /// Owner; `None` for aggregated (segment or universal) patterns and for
    /// single-viewer (on-device) banks that do not track users.
    pub user: Option<u64>,
    /// User segment; `None` with `user == None` marks a universal pattern.
    pub segment: Option<u32>,
    pub context: PatternContext,
    /// In `[0, 1]`.
    pub confidence: f32,
    pub usage_count: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used: i64,
    /// Built by global aggregation (segment or universal pattern).
    pub aggregated: bool,
}

/// What a caller gives to [`super::ReasoningBank::store_pattern`]; the bank
/// assigns the id and normalizes the embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPattern {
    pub query_embedding: Vec<f32>,
    pub successful_results: Vec<ResultId>,
    pub user: Option<u64>,
    pub segment: Option<u32>,
    pub context: PatternContext,
    pub confidence: f32,
    pub usage_count: u32,
}

/// Everything of a pattern except its embedding (which lives in the bank's
/// flat vector arena).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PatternRecord {
    pub id: PatternId,
    pub results: Box<[ResultId]>,
    pub user: Option<u64>,
    pub segment: Option<u32>,
    pub context: PatternContext,
    pub confidence: f32,
    pub usage_count: u32,
    pub created_at: i64,
    pub last_used: i64,
    /// Usage-decay steps already applied since `last_used` (reset on use), so a
    /// maintenance run twice in one week does not decay twice.
    pub decay_steps: u16,
    /// Built by global aggregation.
    pub aggregated: bool,
}

impl PatternRecord {
    /// Heap bytes owned by this record.
    pub fn heap_bytes(&self) -> usize {
        self.results.len() * core::mem::size_of::<ResultId>()
    }
}

/// A pattern returned by a similarity search: everything [`super::ReasoningBank::apply_patterns`]
/// needs, without the embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchedPattern {
    pub id: PatternId,
    /// Cosine similarity between the query and the pattern's embedding.
    pub similarity: f32,
    pub confidence: f32,
    pub usage_count: u32,
    pub successful_results: Vec<ResultId>,
    pub user: Option<u64>,
    pub segment: Option<u32>,
    pub context: PatternContext,
    pub aggregated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_buckets_and_cyclic_distance() {
        assert_eq!(TimeOfDay::from_hour(4), Some(TimeOfDay::Night));
        assert_eq!(TimeOfDay::from_hour(5), Some(TimeOfDay::Morning));
        assert_eq!(TimeOfDay::from_hour(12), Some(TimeOfDay::Afternoon));
        assert_eq!(TimeOfDay::from_hour(17), Some(TimeOfDay::Evening));
        assert_eq!(TimeOfDay::from_hour(22), Some(TimeOfDay::Night));
        assert_eq!(TimeOfDay::from_hour(24), None);
        assert_eq!(TimeOfDay::Night.distance(TimeOfDay::Morning), 1);
        assert_eq!(TimeOfDay::Morning.distance(TimeOfDay::Evening), 2);
        assert_eq!(TimeOfDay::Evening.distance(TimeOfDay::Night), 1);
        assert_eq!(TimeOfDay::Afternoon.distance(TimeOfDay::Afternoon), 0);
    }

    #[test]
    fn mood_set_bits() {
        let s = MoodSet::of(&[Mood::Relaxed, Mood::Social]);
        assert!(s.contains(Mood::Social) && !s.contains(Mood::Sad));
        assert_eq!(s.moods(), vec![Mood::Relaxed, Mood::Social]);
        assert!(s.overlaps(MoodSet::of(&[Mood::Social])));
        assert!(!s.overlaps(MoodSet::of(&[Mood::Sad])));
    }

    fn ctx() -> PatternContext {
        PatternContext {
            time_of_day: Some(TimeOfDay::Evening),
            day_of_week: Some(DayOfWeek::Friday),
            device: Some(DeviceType::Tv),
            session_minutes: Some(30.0),
            moods: MoodSet::of(&[Mood::Relaxed]),
        }
    }

    #[test]
    fn context_match_rules_one_by_one() {
        let c = ContextMatchConfig::default();
        let p = ctx();
        assert!(c.matches(&p, &p));
        // Adjacent bucket matches, two buckets away does not.
        let mut q = p;
        q.time_of_day = Some(TimeOfDay::Night);
        assert!(c.matches(&p, &q));
        q.time_of_day = Some(TimeOfDay::Morning);
        assert!(!c.matches(&p, &q));
        // Device must be equal.
        let mut q = p;
        q.device = Some(DeviceType::Mobile);
        assert!(!c.matches(&p, &q));
        // Weekday vs weekend.
        let mut q = p;
        q.day_of_week = Some(DayOfWeek::Monday);
        assert!(c.matches(&p, &q));
        q.day_of_week = Some(DayOfWeek::Sunday);
        assert!(!c.matches(&p, &q));
        // Mood overlap only when both given.
        let mut q = p;
        q.moods = MoodSet::of(&[Mood::Scared]);
        assert!(!c.matches(&p, &q));
        q.moods = MoodSet::EMPTY;
        assert!(c.matches(&p, &q));
        q.moods = MoodSet::of(&[Mood::Scared, Mood::Relaxed]);
        assert!(c.matches(&p, &q));
        // Session length ratio 4.
        let mut q = p;
        q.session_minutes = Some(120.0);
        assert!(c.matches(&p, &q));
        q.session_minutes = Some(121.0);
        assert!(!c.matches(&p, &q));
        // Unknown fields never reject.
        assert!(c.matches(&p, &PatternContext::default()));
        assert!(c.matches(&PatternContext::default(), &p));
        // Switches.
        let loose = ContextMatchConfig {
            time_of_day_tolerance: 2,
            require_same_device: false,
            require_same_day_kind: false,
            require_mood_overlap: false,
            session_length_max_ratio: f32::INFINITY,
        };
        let far = PatternContext {
            time_of_day: Some(TimeOfDay::Morning),
            day_of_week: Some(DayOfWeek::Sunday),
            device: Some(DeviceType::Mobile),
            session_minutes: Some(600.0),
            moods: MoodSet::of(&[Mood::Scared]),
        };
        assert!(loose.matches(&p, &far));
        assert!(!c.matches(&p, &far));
    }
}
