//! The learning loop (spec 7.2): what the viewer did with the results of one
//! query turns into patterns.
//!
//! One call of [`ReasoningBank::learn`] with a [`QueryFeedback`]:
//! 1. A result is **positive** if it got a click, a completion, or a watch of
//!    more than `watch_positive_fraction` (50%); it is **skipped** if it got a
//!    skip and no positive signal.
//! 2. The query is searched like a live query (scope of the viewer, context
//!    filter, `min_similarity`); whether ≥ 1 pattern matched feeds the
//!    pattern-match rate in [`super::BankStats`].
//! 3. Matched patterns owned by the viewer are updated: any positive result
//!    among its successful results → reinforced (confidence += rate·(1 −
//!    confidence), usage + 1, last_used = now); any skipped result among them →
//!    weakened (confidence −= `skip_penalty`, floored at 0). Aggregated patterns
//!    are rebuilt by [`ReasoningBank::aggregate_global`] and not touched here.
//! 4. With `min_positive_results` (3) or more positives: the viewer's own most
//!    similar pattern at ≥ `reinforce_similarity` whose context matches absorbs
//!    them (union of results; reinforced once if step 3 did not already);
//!    otherwise a new pattern is created with `initial_confidence`, usage 1.

use super::pattern::PatternRecord;
use super::{
    clean_results, normalized, BankError, PatternContext, PatternId, ReasoningBank, ResultId, Scope,
};

/// What a viewer did with one result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    Click,
    /// Fraction of the title watched, in `[0, 1]`.
    Watch {
        fraction: f32,
    },
    Completion,
    Skip,
}

/// The outcome of one query, to learn from.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryFeedback {
    pub query_embedding: Vec<f32>,
    pub context: PatternContext,
    /// The viewer (`None` in a single-viewer bank).
    pub user: Option<u64>,
    pub segment: Option<u32>,
    pub signals: Vec<(ResultId, Signal)>,
}

/// What one learning step changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LearnOutcome {
    /// Patterns the query matched (counted for the match rate).
    pub matched: Vec<PatternId>,
    pub created: Option<PatternId>,
    pub reinforced: Vec<PatternId>,
    pub weakened: Vec<PatternId>,
    pub positives: Vec<ResultId>,
    pub skipped: Vec<ResultId>,
}

impl ReasoningBank {
    /// Reinforces one pattern directly (the rule of step 3: confidence moves
    /// `reinforce_rate` of the way to 1, usage + 1, last used = `now`), for callers
    /// that decided themselves that the pattern's prediction came true.
    pub fn reinforce_pattern(&mut self, id: PatternId, now: i64) -> Result<(), BankError> {
        let (slot, _) = self.record(id)?;
        let rate = self.config.reinforce_rate;
        reinforce(self.record_mut(slot), rate, now);
        self.counters.patterns_reinforced += 1;
        Ok(())
    }

    /// Learn from one query's feedback at time `now` (see the module docs).
    /// Invalid feedback is refused before anything changes.
    pub fn learn(&mut self, fb: &QueryFeedback, now: i64) -> Result<LearnOutcome, BankError> {
        let q = normalized(&fb.query_embedding, self.config.dim)?;
        super::check_context(&fb.context)?;
        let mut positives: Vec<ResultId> = Vec::new();
        let mut skipped: Vec<ResultId> = Vec::new();
        for &(id, s) in &fb.signals {
            let positive = match s {
                Signal::Click | Signal::Completion => true,
                Signal::Watch { fraction } => {
                    super::check_unit("watch fraction", fraction)?;
                    fraction > self.config.watch_positive_fraction
                }
                Signal::Skip => false,
            };
            if positive {
                if !positives.contains(&id) {
                    positives.push(id);
                }
            } else if matches!(s, Signal::Skip) && !skipped.contains(&id) {
                skipped.push(id);
            }
        }
        skipped.retain(|id| !positives.contains(id));

        let scope = match fb.user {
            Some(user) => Scope::User {
                user,
                segment: fb.segment,
            },
            None => Scope::All,
        };
        let found = self.find_similar_scoped(
            &q,
            &fb.context,
            self.config.learn_match_limit,
            self.config.min_similarity,
            scope,
        )?;
        let mut out = LearnOutcome {
            matched: found.matches.iter().map(|m| m.id).collect(),
            positives,
            skipped,
            ..Default::default()
        };
        self.counters.queries_seen += 1;
        if !found.matches.is_empty() {
            self.counters.queries_matched += 1;
        }

        let rate = self.config.reinforce_rate;
        let penalty = self.config.skip_penalty;
        for m in &found.matches {
            if m.user != fb.user || m.aggregated {
                continue;
            }
            let (slot, _) = self.record(m.id)?;
            let r = self.record_mut(slot);
            if out.positives.iter().any(|x| r.results.contains(x)) {
                reinforce(r, rate, now);
                out.reinforced.push(m.id);
            }
            if out.skipped.iter().any(|x| r.results.contains(x)) {
                r.confidence = (r.confidence - penalty).max(0.0);
                out.weakened.push(m.id);
            }
        }
        self.counters.patterns_reinforced += out.reinforced.len() as u64;
        self.counters.patterns_weakened += out.weakened.len() as u64;

        if out.positives.len() >= self.config.min_positive_results {
            // The viewer's own closest pattern, whatever the match limit was.
            let own = self.find_similar_scoped(
                &q,
                &fb.context,
                1,
                self.config.reinforce_similarity,
                Scope::Owner(fb.user),
            )?;
            let cap = self.config.max_results_per_pattern;
            match own.matches.first() {
                Some(m) => {
                    let id = m.id;
                    let (slot, _) = self.record(id)?;
                    let already = out.reinforced.contains(&id);
                    let pos = out.positives.clone();
                    let r = self.record_mut(slot);
                    let mut merged = std::mem::take(&mut r.results).into_vec();
                    merged.extend(pos);
                    r.results = clean_results(merged, cap);
                    if !already {
                        reinforce(r, rate, now);
                        out.reinforced.push(id);
                        self.counters.patterns_reinforced += 1;
                    }
                }
                None => {
                    let id = self.next_id;
                    let rec = PatternRecord {
                        id,
                        results: clean_results(out.positives.clone(), cap),
                        user: fb.user,
                        segment: fb.segment,
                        context: fb.context,
                        confidence: self.config.initial_confidence,
                        usage_count: 1,
                        created_at: now,
                        last_used: now,
                        decay_steps: 0,
                        aggregated: false,
                    };
                    self.insert_record(rec, &q);
                    self.next_id += 1;
                    self.counters.patterns_created += 1;
                    out.created = Some(id);
                }
            }
        }
        Ok(out)
    }
}

fn reinforce(r: &mut PatternRecord, rate: f32, now: i64) {
    r.confidence = (r.confidence + rate * (1.0 - r.confidence)).min(1.0);
    r.usage_count = r.usage_count.saturating_add(1);
    r.last_used = now;
    r.decay_steps = 0;
}
