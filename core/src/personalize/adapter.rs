//! The per-viewer adapter service: adapt embeddings, buffer interactions,
//! decide when to learn, learn (BPR + EWC++ with Adam), report, export.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ewc::EwcState;
use super::lora::{
    a_times, axpy, bpr_loss_grad, delta_frobenius, dot, pair_fisher, transpose, BaseProjection,
    GlobalAdapter, Scratch, TrainSet,
};
use super::signals::{InteractionKind, ViewerInteraction};
use super::{check_len, check_vec, EwcAnchor, PersonalizeConfig, PersonalizeError};
use crate::optim::{Adam, AdamConfig};
use crate::rng::Rng;

/// Longest accepted content id, in bytes.
pub const MAX_CONTENT_ID: usize = 512;

/// The embeddings that go with one interaction.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The viewer's query / profile / context embedding at the time (d values).
    pub query: &'a [f32],
    /// The embedding of the title interacted with (d values).
    pub item: &'a [f32],
}

/// Why an update did or did not adapt.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The adapter learned from the buffered interactions.
    Adapted,
    /// Fewer than `min_interactions` interactions since the last adaptation.
    WaitingForInteractions { have: u64, need: u64 },
    /// Less than `min_interval_secs` since the last adaptation.
    WaitingForTime { remaining_secs: i64 },
    /// Accumulated |signal| not above `min_signal`.
    WaitingForSignal { have: f32, need: f32 },
    /// Thresholds met but no training pair could be formed (e.g. only
    /// positives and an empty negative pool); interactions stay buffered.
    NoTrainingPairs,
    /// The learning steps produced non-finite values; the adapter was rolled
    /// back to its previous factors and the interactions stay buffered.
    Diverged,
}

/// What [`Adapter::update_from_interaction`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateOutcome {
    pub adapted: bool,
    pub decision: Decision,
    /// Signal strength of this interaction.
    pub strength: f32,
    /// Interactions buffered for the next adaptation.
    pub buffered: usize,
    /// Number of BPR pairs trained on (0 if not adapted).
    pub pairs: usize,
    /// Learning rate used (None if not adapted).
    pub lr: Option<f32>,
    /// Weighted BPR loss on the adaptation's pairs before / after its steps.
    pub loss_before: Option<f32>,
    pub loss_after: Option<f32>,
    /// EWC++ penalty at the end of the adaptation.
    pub ewc_penalty: Option<f32>,
}

/// A snapshot of the adapter's learning state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterStats {
    pub user_id: String,
    pub d: usize,
    pub rank: usize,
    /// Interactions ever accepted.
    pub interaction_count: u64,
    pub adaptations: u64,
    /// Time of the last accepted interaction (as passed in `now`).
    pub last_updated: Option<i64>,
    pub last_adaptation: Option<i64>,
    /// Interactions since the last adaptation (including neutral ones).
    pub pending_interactions: u64,
    /// Interactions held in the buffer (non-neutral, at most `max_pending`).
    pub buffered: usize,
    /// Accumulated |signal| since the last adaptation.
    pub pending_signal: f32,
    /// ‖(α/r) B_u A_u‖_F, the size of the per-viewer update.
    pub update_norm: f32,
    /// ‖(α/r) B_g A_g‖_F.
    pub global_update_norm: f32,
    /// Σ of the bias-corrected Fisher diagonal.
    pub fisher_mass: f32,
    pub fisher_updates: u32,
    pub global_version: u64,
    /// Interactions trained on since the current global version.
    pub trained_samples: u64,
    /// BPR loss at the end of the last adaptation.
    pub last_loss: Option<f32>,
    /// Learning rate the next adaptation would use.
    pub next_lr: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pending {
    pub kind: InteractionKind,
    pub content_id: String,
    pub strength: f32,
    pub query: Vec<f32>,
    pub item: Vec<f32>,
}

/// Everything that changes; compared whole in the "rejection leaves the adapter unchanged" tests.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UserState {
    pub user_id: String,
    pub global_version: u64,
    pub init_seed: u64,
    pub a: Vec<f32>,
    /// Bᵀ (r × d).
    pub b: Vec<f32>,
    pub ewc: EwcState,
    pub interaction_count: u64,
    pub trained_samples: u64,
    pub adaptations: u64,
    pub last_updated: Option<i64>,
    pub last_adaptation: Option<i64>,
    pub last_loss: Option<f32>,
    pub pending: VecDeque<Pending>,
    pub pending_count: u64,
    pub pending_signal: f32,
}

/// One viewer's adapter: the shared base W and global tier, plus this viewer's tier.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub(crate) cfg: PersonalizeConfig,
    pub(crate) base: Arc<BaseProjection>,
    pub(crate) global: Arc<GlobalAdapter>,
    pub(crate) st: UserState,
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Standard LoRA start: A uniform in ±init_scale/√d (seeded), B = 0.
pub(crate) fn initial_a(cfg: &PersonalizeConfig, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let bound = cfg.init_scale / (cfg.d as f32).sqrt();
    (0..cfg.rank * cfg.d)
        .map(|_| rng.uniform(-bound, bound))
        .collect()
}

pub(crate) fn check_shared(
    cfg: &PersonalizeConfig,
    base: &BaseProjection,
    global: &GlobalAdapter,
) -> Result<(), PersonalizeError> {
    cfg.validate()?;
    check_len("base projection d", cfg.d, base.d())?;
    check_len("global adapter d", cfg.d, global.d)?;
    check_len("global adapter rank", cfg.rank, global.rank)?;
    if global.alpha != cfg.alpha {
        return Err(PersonalizeError::Mismatch {
            what: "global adapter alpha",
            stored: global.alpha.to_string(),
            expected: cfg.alpha.to_string(),
        });
    }
    Ok(())
}

/// Load a viewer's adapter from stored bytes, or create a fresh one when
/// `store_bytes` is `None`. The bytes must belong to `user_id` and match `cfg`'s shape.
pub fn load_adapter(
    store_bytes: Option<&[u8]>,
    user_id: &str,
    cfg: &PersonalizeConfig,
    base: Arc<BaseProjection>,
    global: Arc<GlobalAdapter>,
) -> Result<Adapter, PersonalizeError> {
    match store_bytes {
        Some(bytes) => Adapter::from_bytes(bytes, user_id, cfg, base, global),
        None => Adapter::new(user_id, cfg, base, global),
    }
}

/// The spec's AdaptEmbeddings: `(W' q, magnitude)` with
/// `magnitude = ‖W' q − W q‖ / ‖W q‖` (both tiers' change relative to the base
/// projection; 0 when both are zero, and `‖W' q − W q‖ / f32::MIN_POSITIVE`,
/// capped at `f32::MAX`, if only the base output is zero).
pub fn adapt_embeddings(
    adapter: &Adapter,
    base_embedding: &[f32],
) -> Result<(Vec<f32>, f32), PersonalizeError> {
    adapter.adapt_embedding(base_embedding)
}

impl Adapter {
    /// A fresh adapter for `user_id` (A seeded from `cfg.seed` and the user id, B = 0).
    pub fn new(
        user_id: &str,
        cfg: &PersonalizeConfig,
        base: Arc<BaseProjection>,
        global: Arc<GlobalAdapter>,
    ) -> Result<Self, PersonalizeError> {
        check_shared(cfg, &base, &global)?;
        if user_id.len() > MAX_CONTENT_ID {
            return Err(PersonalizeError::ContentIdTooLong {
                len: user_id.len(),
                max: MAX_CONTENT_ID,
            });
        }
        let init_seed = cfg.seed ^ fnv1a(user_id);
        let a = initial_a(cfg, init_seed);
        let b = vec![0.0; cfg.rank * cfg.d];
        let ewc = EwcState::new(a.clone(), b.clone());
        Ok(Adapter {
            cfg: cfg.clone(),
            st: UserState {
                user_id: user_id.to_string(),
                global_version: global.version,
                init_seed,
                a,
                b,
                ewc,
                interaction_count: 0,
                trained_samples: 0,
                adaptations: 0,
                last_updated: None,
                last_adaptation: None,
                last_loss: None,
                pending: VecDeque::new(),
                pending_count: 0,
                pending_signal: 0.0,
            },
            base,
            global,
        })
    }

    pub fn config(&self) -> &PersonalizeConfig {
        &self.cfg
    }
    pub fn user_id(&self) -> &str {
        &self.st.user_id
    }
    pub fn base(&self) -> &Arc<BaseProjection> {
        &self.base
    }
    pub fn global(&self) -> &Arc<GlobalAdapter> {
        &self.global
    }
    /// This viewer's LoRA tier without copies: `(A, B, scale)`, A and B both r × d
    /// row-major; the tier adds `scale · Σ_k ⟨A_k, q⟩ · B_k` to the shared `W q`.
    pub fn viewer_tier(&self) -> (&[f32], &[f32], f32) {
        (&self.st.a, &self.st.b, self.cfg.scale())
    }

    /// The per-viewer factors (A: r × d, B: d × r, row-major; copies).
    pub fn factors(&self) -> (Vec<f32>, Vec<f32>) {
        (
            self.st.a.clone(),
            transpose(&self.st.b, self.cfg.rank, self.cfg.d),
        )
    }

    /// `out = W' q`; returns the adaptation magnitude (see [`adapt_embeddings`]).
    /// Allocation-free; about `4·r·d` multiply-adds plus `W q`. Errors on
    /// wrong dimensions, non-finite input, or an f32 overflow of the result
    /// (`out` is then unspecified; the adapter is never changed).
    pub fn adapt_into(&self, q: &[f32], out: &mut [f32]) -> Result<f32, PersonalizeError> {
        let d = self.cfg.d;
        let r = self.cfg.rank;
        check_vec("query embedding", d, q)?;
        check_len("output buffer", d, out.len())?;
        let c = self.cfg.scale();
        let cg = self.global.alpha / self.global.rank as f32;
        let (mut ug, mut uu) = ([0f32; 16], [0f32; 16]);
        let (ug, uu) = (&mut ug[..r], &mut uu[..r]);
        a_times(&self.global.a, d, q, ug);
        a_times(&self.st.a, d, q, uu);
        // out = Δ(q) first (both tiers), then += W q.
        out.iter_mut().for_each(|x| *x = 0.0);
        for k in 0..r {
            axpy(cg * ug[k], &self.global.bt[k * d..(k + 1) * d], out);
            axpy(c * uu[k], &self.st.b[k * d..(k + 1) * d], out);
        }
        let delta_sq = dot(out, out);
        let base_sq = match &*self.base {
            BaseProjection::Identity { .. } => {
                axpy(1.0, q, out);
                dot(q, q)
            }
            BaseProjection::Dense(m) => {
                let w = m.values();
                let mut s = 0f32;
                for (i, o) in out.iter_mut().enumerate() {
                    let wq = dot(&w[i * d..(i + 1) * d], q);
                    s += wq * wq;
                    *o += wq;
                }
                s
            }
        };
        if !(delta_sq.is_finite() && base_sq.is_finite()) || out.iter().any(|x| !x.is_finite()) {
            return Err(PersonalizeError::Overflow {
                what: "adapted embedding",
            });
        }
        Ok(if delta_sq == 0.0 {
            0.0
        } else {
            (delta_sq.sqrt() / base_sq.sqrt().max(f32::MIN_POSITIVE)).min(f32::MAX)
        })
    }

    /// `(W' q, magnitude)`, allocating the output.
    pub fn adapt_embedding(&self, q: &[f32]) -> Result<(Vec<f32>, f32), PersonalizeError> {
        let mut out = vec![0.0; self.cfg.d];
        let m = self.adapt_into(q, &mut out)?;
        Ok((out, m))
    }

    /// `⟨W' q, item⟩`.
    pub fn score(&self, q: &[f32], item: &[f32]) -> Result<f32, PersonalizeError> {
        check_vec("item embedding", self.cfg.d, item)?;
        let (y, _) = self.adapt_embedding(q)?;
        Ok(dot(&y, item))
    }

    fn decide(&self, now: i64) -> Decision {
        let need = self.cfg.min_interactions as u64;
        if self.st.pending_count < need {
            return Decision::WaitingForInteractions {
                have: self.st.pending_count,
                need,
            };
        }
        if let Some(t) = self.st.last_adaptation {
            let elapsed = now.saturating_sub(t);
            if elapsed < self.cfg.min_interval_secs {
                return Decision::WaitingForTime {
                    remaining_secs: self.cfg.min_interval_secs.saturating_sub(elapsed),
                };
            }
        }
        if self.st.pending_signal <= self.cfg.min_signal {
            return Decision::WaitingForSignal {
                have: self.st.pending_signal,
                need: self.cfg.min_signal,
            };
        }
        Decision::Adapted
    }

    /// Record one interaction; adapt when ≥ `min_interactions` interactions,
    /// ≥ `min_interval_secs` and accumulated |signal| > `min_signal` since the
    /// last adaptation. `negative_pool` is a flat n × d slice of candidate
    /// items the viewer did not engage with (negatives are sampled from it with
    /// `rng`); it may be empty when the buffer holds both positives and skips.
    /// All inputs are validated before anything changes.
    pub fn update_from_interaction(
        &mut self,
        interaction: &ViewerInteraction,
        now: i64,
        obs: Observation<'_>,
        negative_pool: &[f32],
        rng: &mut Rng,
    ) -> Result<UpdateOutcome, PersonalizeError> {
        let d = self.cfg.d;
        interaction.validate()?;
        if interaction.content_id.len() > MAX_CONTENT_ID {
            return Err(PersonalizeError::ContentIdTooLong {
                len: interaction.content_id.len(),
                max: MAX_CONTENT_ID,
            });
        }
        check_vec("query embedding", d, obs.query)?;
        check_vec("item embedding", d, obs.item)?;
        if negative_pool.len() % d != 0 {
            return Err(PersonalizeError::RaggedPool {
                what: "negative pool",
                len: negative_pool.len(),
                d,
            });
        }
        super::check_embedding_values("negative pool", negative_pool)?;

        // ---- validated: from here on nothing fails ----
        let strength = interaction.strength(&self.cfg);
        let st = &mut self.st;
        st.interaction_count = st.interaction_count.saturating_add(1);
        st.last_updated = Some(now);
        st.pending_count = st.pending_count.saturating_add(1);
        st.pending_signal += strength.abs();
        if strength != 0.0 {
            if st.pending.len() == self.cfg.max_pending {
                st.pending.pop_front();
            }
            st.pending.push_back(Pending {
                kind: interaction.kind,
                content_id: interaction.content_id.clone(),
                strength,
                query: obs.query.to_vec(),
                item: obs.item.to_vec(),
            });
        }
        let mut out = UpdateOutcome {
            adapted: false,
            decision: self.decide(now),
            strength,
            buffered: self.st.pending.len(),
            pairs: 0,
            lr: None,
            loss_before: None,
            loss_after: None,
            ewc_penalty: None,
        };
        if out.decision != Decision::Adapted {
            return Ok(out);
        }
        self.run_adaptation(now, negative_pool, rng, &mut out);
        Ok(out)
    }

    /// Adapt on the buffered interactions now, ignoring the decision
    /// thresholds (e.g. to flush at the end of a session). `negative_pool` as in
    /// [`update_from_interaction`](Self::update_from_interaction). Returns
    /// `NoTrainingPairs` (and changes nothing) when the buffer gives no pair.
    pub fn adapt_pending(
        &mut self,
        now: i64,
        negative_pool: &[f32],
        rng: &mut Rng,
    ) -> Result<UpdateOutcome, PersonalizeError> {
        let d = self.cfg.d;
        if negative_pool.len() % d != 0 {
            return Err(PersonalizeError::RaggedPool {
                what: "negative pool",
                len: negative_pool.len(),
                d,
            });
        }
        super::check_embedding_values("negative pool", negative_pool)?;
        let mut out = UpdateOutcome {
            adapted: false,
            decision: Decision::Adapted,
            strength: 0.0,
            buffered: self.st.pending.len(),
            pairs: 0,
            lr: None,
            loss_before: None,
            loss_after: None,
            ewc_penalty: None,
        };
        self.run_adaptation(now, negative_pool, rng, &mut out);
        Ok(out)
    }

    fn run_adaptation(
        &mut self,
        now: i64,
        negative_pool: &[f32],
        rng: &mut Rng,
        out: &mut UpdateOutcome,
    ) {
        let set = self.build_train_set(negative_pool, rng);
        if set.n_pairs() == 0 {
            out.decision = Decision::NoTrainingPairs;
            return;
        }
        let lr = self.cfg.lr_at(self.st.interaction_count);
        let saved = (self.st.a.clone(), self.st.b.clone(), self.st.ewc.clone());
        let (before, after, penalty) = self.learn(&set, lr);
        if let Some(max) = self.cfg.max_update_norm {
            let (d, r) = (self.cfg.d, self.cfg.rank);
            let norm = delta_frobenius(&self.st.a, &self.st.b, d, r, self.cfg.scale());
            if norm > max {
                let s = max / norm;
                self.st.b.iter_mut().for_each(|x| *x *= s);
                if self.cfg.ewc_anchor == EwcAnchor::Consolidated {
                    self.st.ewc.anchor_b.copy_from_slice(&self.st.b);
                }
            }
        }
        let st = &self.st;
        if !(after.is_finite()
            && penalty.is_finite()
            && st.a.iter().chain(&st.b).all(|x| x.is_finite())
            && st
                .ewc
                .fisher_a
                .iter()
                .chain(&st.ewc.fisher_b)
                .all(|x| x.is_finite()))
        {
            // Defensive: inputs are range-checked, so this should not happen;
            // if it does, keep the last good factors and the buffer.
            (self.st.a, self.st.b, self.st.ewc) = saved;
            out.decision = Decision::Diverged;
            return;
        }
        let st = &mut self.st;
        st.trained_samples = st.trained_samples.saturating_add(st.pending.len() as u64);
        st.pending.clear();
        st.pending_count = 0;
        st.pending_signal = 0.0;
        st.last_adaptation = Some(now);
        st.adaptations = st.adaptations.saturating_add(1);
        st.last_loss = Some(after as f32);
        out.adapted = true;
        out.decision = Decision::Adapted;
        out.buffered = 0;
        out.pairs = set.n_pairs();
        out.lr = Some(lr);
        out.loss_before = Some(before as f32);
        out.loss_after = Some(after as f32);
        out.ewc_penalty = Some(penalty as f32);
    }

    /// BPR pairs from the buffer. A positive interaction (strength s > 0) is
    /// compared against every buffered negative and `negatives_per_observation`
    /// pool samples, its weight s split evenly over those pairs; a negative
    /// interaction (skip, low rating) is placed below `negatives_per_observation`
    /// pool samples with weight |s| split evenly. Each pair uses the query of
    /// the interaction it comes from (interactions with identical query
    /// embeddings are grouped). Weights are normalized to sum to 1.
    pub(crate) fn build_train_set(&self, pool: &[f32], rng: &mut Rng) -> TrainSet {
        let d = self.cfg.d;
        let k = self.cfg.negatives_per_observation;
        let n_pool = pool.len() / d;
        let k_pool = if n_pool > 0 { k } else { 0 };
        let pending = &self.st.pending;
        let negatives: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].strength < 0.0)
            .collect();
        // Interactions that share a query embedding (bitwise) share a group, so
        // the r × d work per step is done once per distinct query.
        let mut group_query: Vec<usize> = Vec::new();
        let mut group_pairs: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
        for (obs_index, p) in pending.iter().enumerate() {
            let mut diffs = Vec::new();
            let mut weights = Vec::new();
            if p.strength > 0.0 {
                let n_cmp = negatives.len() + k_pool;
                if n_cmp == 0 {
                    continue;
                }
                let w = p.strength / n_cmp as f32;
                for &j in &negatives {
                    let other = &pending[j].item;
                    diffs.extend(p.item.iter().zip(other).map(|(a, b)| a - b));
                    weights.push(w);
                }
                for _ in 0..k_pool {
                    let n = rng.below(n_pool);
                    let other = &pool[n * d..(n + 1) * d];
                    diffs.extend(p.item.iter().zip(other).map(|(a, b)| a - b));
                    weights.push(w);
                }
            } else {
                if k_pool == 0 {
                    continue;
                }
                let w = -p.strength / k_pool as f32;
                for _ in 0..k_pool {
                    let n = rng.below(n_pool);
                    let other = &pool[n * d..(n + 1) * d];
                    diffs.extend(other.iter().zip(&p.item).map(|(a, b)| a - b));
                    weights.push(w);
                }
            }
            match group_query
                .iter()
                .position(|&g| pending[g].query == p.query)
            {
                Some(g) => {
                    group_pairs[g].0.extend(diffs);
                    group_pairs[g].1.extend(weights);
                }
                None => {
                    group_query.push(obs_index);
                    group_pairs.push((diffs, weights));
                }
            }
        }
        let mut set = TrainSet {
            d,
            ..Default::default()
        };
        let mut y = vec![0f32; d];
        for (&qi, (diffs, weights)) in group_query.iter().zip(group_pairs) {
            let q = &pending[qi].query;
            let start = set.weights.len();
            set.diffs.extend(diffs);
            set.weights.extend(weights);
            let end = set.weights.len();
            set.queries.extend_from_slice(q);
            set.groups.push((start, end));
            // Frozen part of each score difference: ⟨W q + global(q), Δe⟩.
            self.base.apply(q, &mut y);
            self.global.add_to(q, &mut y);
            for i in start..end {
                set.base_x.push(dot(&y, &set.diffs[i * d..(i + 1) * d]));
            }
        }
        let total: f32 = set.weights.iter().sum();
        if total > 0.0 {
            set.weights.iter_mut().for_each(|w| *w /= total);
        }
        set
    }

    /// One adaptation: `steps_per_adaptation` Adam steps (fresh moments) on
    /// BPR + EWC++, then fold this adaptation's Fisher in and re-anchor.
    /// Returns (BPR loss before, BPR loss after, EWC penalty after).
    pub(crate) fn learn(&mut self, set: &TrainSet, lr: f32) -> (f64, f64, f64) {
        let (r, d) = (self.cfg.rank, self.cfg.d);
        let c = self.cfg.scale();
        let (lambda, gamma) = (self.cfg.ewc_lambda, self.cfg.fisher_decay);
        let k = self.st.ewc.multiplier(lambda, gamma, self.cfg.fisher_scale);
        let adam = AdamConfig {
            lr,
            beta1: self.cfg.adam_beta1,
            beta2: self.cfg.adam_beta2,
            eps: self.cfg.adam_eps,
            weight_decay: 0.0,
        };
        let st = &mut self.st;
        let (mut opt_a, mut opt_b) = (Adam::new(r * d), Adam::new(d * r));
        let (mut ga, mut gb) = (vec![0f32; r * d], vec![0f32; d * r]);
        let mut scratch = Scratch::default();
        let mut before = 0.0;
        for step in 0..self.cfg.steps_per_adaptation {
            let l = bpr_loss_grad(&st.a, &st.b, r, c, set, &mut ga, &mut gb, &mut scratch);
            if step == 0 {
                before = l;
            }
            st.ewc.add_grad(k, &st.a, &st.b, &mut ga, &mut gb);
            opt_a.step(&adam, &mut st.a, &ga, None);
            opt_b.step(&adam, &mut st.b, &gb, None);
        }
        let after = bpr_loss_grad(&st.a, &st.b, r, c, set, &mut ga, &mut gb, &mut scratch);
        let penalty = st.ewc.penalty(k, &st.a, &st.b);
        let (mut fa, mut fb) = (vec![0f32; r * d], vec![0f32; d * r]);
        pair_fisher(&st.a, &st.b, r, c, set, &mut fa, &mut fb);
        st.ewc.fold(gamma, &fa, &fb);
        if self.cfg.ewc_anchor == EwcAnchor::Consolidated {
            st.ewc.anchor_a.copy_from_slice(&st.a);
            st.ewc.anchor_b.copy_from_slice(&st.b);
        }
        (before, after, penalty)
    }

    /// The learning state.
    pub fn stats(&self) -> AdapterStats {
        let (d, r) = (self.cfg.d, self.cfg.rank);
        let st = &self.st;
        AdapterStats {
            user_id: st.user_id.clone(),
            d,
            rank: r,
            interaction_count: st.interaction_count,
            adaptations: st.adaptations,
            last_updated: st.last_updated,
            last_adaptation: st.last_adaptation,
            pending_interactions: st.pending_count,
            buffered: st.pending.len(),
            pending_signal: st.pending_signal,
            update_norm: delta_frobenius(&st.a, &st.b, d, r, self.cfg.scale()),
            global_update_norm: delta_frobenius(
                &self.global.a,
                &self.global.bt,
                d,
                r,
                self.global.alpha / r as f32,
            ),
            fisher_mass: st.ewc.mass(self.cfg.fisher_decay),
            fisher_updates: st.ewc.updates,
            global_version: st.global_version,
            trained_samples: st.trained_samples,
            last_loss: st.last_loss,
            next_lr: self.cfg.lr_at(st.interaction_count),
        }
    }

    /// Replace the global tier with a newer version published by the sync
    /// server (bytes from [`GlobalAdapter::to_bytes`]). Rejects a different
    /// shape or α, non-finite values, and versions not newer than the current
    /// one. The per-viewer tier is kept; its `trained_samples` restart at 0
    /// because the new global version already aggregates the earlier updates.
    pub fn apply_global(&mut self, bytes: &[u8]) -> Result<u64, PersonalizeError> {
        let g = GlobalAdapter::from_bytes(bytes, &self.cfg)?;
        if g.version <= self.global.version {
            return Err(PersonalizeError::StaleGlobal {
                current: self.global.version,
                offered: g.version,
            });
        }
        let v = g.version;
        self.global = Arc::new(g);
        self.st.global_version = v;
        self.st.trained_samples = 0;
        Ok(v)
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> (UserState, GlobalAdapter) {
        (self.st.clone(), (*self.global).clone())
    }
}
