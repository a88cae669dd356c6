//! The adapter half of the SONA layer (`bpr_lora` in `sona eval`): the global BPR-MF
//! model plus one on-device LoRA adapter per viewer ([`crate::personalize`], with
//! EWC++). The evaluation's `sona` system fuses it, with the ReasoningBank memory
//! ([`super::memory`]), on top of the hybrid.
//!
//! The viewer's query embedding is their BPR user vector `p_u` (which BPR's own
//! online fold-in keeps updating); the item embeddings are BPR's item factors.
//! Scores: `⟨W' p_u, q_j⟩ + b_j` with `W' = I + (α/r)(B_g A_g + B_u A_u)` from the
//! viewer's adapter (the global tier is zero here: no federated rounds offline).
//!
//! Each observed interaction is passed to the viewer's adapter as a
//! `watch_complete` signal (a MovieLens rating means the title was watched; the
//! offline protocols count every rated title as relevant), with a negative pool of
//! `negatives` items the viewer has not seen. The adapter adapts under its own
//! rules (≥ `min_interactions`, ≥ `min_interval_secs`, enough signal).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bpr::Bpr;
use super::{dot, top_k, OnlineRecommender, Reason, RecommendError};
use crate::data::Interaction;
use crate::personalize::{
    Adapter, BaseProjection, GlobalAdapter, InteractionKind, Observation, PersonalizeConfig,
    ViewerInteraction,
};
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct SonaConfig {
    /// Adapter settings; `d` is replaced by the BPR factor count.
    pub personalize: PersonalizeConfig,
    /// Unseen items in each negative pool.
    pub negatives: usize,
    pub seed: u64,
}

/// Defaults: the personalize defaults except α = 2, base_lr = 0.002 and
/// min_interval_secs = 0, chosen on a validation replay (temporal 80/20 split of
/// the streaming protocol's training side, ML-100K); the module's own defaults
/// (α = 16, lr = 0.01, 1 h interval) lost ~0.05 HR@10 to plain BPR there.
impl Default for SonaConfig {
    fn default() -> Self {
        SonaConfig {
            personalize: PersonalizeConfig {
                alpha: 2.0,
                base_lr: 0.002,
                min_interval_secs: 0,
                ..Default::default()
            },
            negatives: 32,
            seed: 17,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Sona {
    bpr: Bpr,
    cfg: PersonalizeConfig,
    base: Arc<BaseProjection>,
    global: Arc<GlobalAdapter>,
    adapters: BTreeMap<u32, Adapter>,
    negatives: usize,
    rng: Rng,
}

fn perr(e: crate::personalize::PersonalizeError) -> RecommendError {
    RecommendError::Personalize(e.to_string())
}

impl Sona {
    pub fn new(bpr: Bpr, cfg: &SonaConfig) -> Result<Self, RecommendError> {
        let mut pc = cfg.personalize.clone();
        pc.d = bpr.factors();
        pc.validate().map_err(perr)?;
        if cfg.negatives == 0 {
            return Err(RecommendError::InvalidConfig(
                "sona: negatives must be ≥ 1".into(),
            ));
        }
        Ok(Sona {
            base: Arc::new(BaseProjection::identity(pc.d)),
            global: Arc::new(GlobalAdapter::zero(&pc)),
            cfg: pc,
            bpr,
            adapters: BTreeMap::new(),
            negatives: cfg.negatives,
            rng: Rng::new(cfg.seed),
        })
    }

    /// The viewer's adapter, if they have interacted since the model was built.
    pub fn adapter(&self, user: u32) -> Option<&Adapter> {
        self.adapters.get(&user)
    }

    /// `W' p_u` (just `p_u` before the viewer's first interaction).
    fn query(&self, user: u32) -> Vec<f32> {
        let p = self.bpr.user_vector(user);
        match self.adapters.get(&user) {
            Some(a) => a.adapt_embedding(&p).map(|(y, _)| y).unwrap_or(p),
            None => p,
        }
    }

    pub fn scores(&self, user: u32) -> Vec<f32> {
        let y = self.query(user);
        self.bpr
            .item_factors()
            .chunks_exact(self.cfg.d)
            .zip(self.bpr.item_bias())
            .map(|(q, b)| dot(&y, q) + b)
            .collect()
    }
}

impl OnlineRecommender for Sona {
    fn name(&self) -> &str {
        "bpr_lora"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], _now: i64) -> Vec<u32> {
        top_k(&self.scores(user), k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        // BPR validates the interaction (item range, finite rating) first.
        self.bpr.observe(x)?;
        let d = self.cfg.d;
        let n = self.bpr.n_items();
        let seen = self.bpr.seen(x.user);
        let mut pool = Vec::with_capacity(self.negatives * d);
        if seen.len() < n {
            for _ in 0..self.negatives {
                let j = loop {
                    let j = self.rng.below(n) as u32;
                    if seen.binary_search(&j).is_err() {
                        break j;
                    }
                };
                pool.extend_from_slice(
                    &self.bpr.item_factors()[j as usize * d..(j as usize + 1) * d],
                );
            }
        }
        let adapter = match self.adapters.entry(x.user) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(
                Adapter::new(
                    &x.user.to_string(),
                    &self.cfg,
                    self.base.clone(),
                    self.global.clone(),
                )
                .map_err(perr)?,
            ),
        };
        let query = self.bpr.user_vector(x.user);
        let item = &self.bpr.item_factors()[x.item as usize * d..(x.item as usize + 1) * d];
        let vi = ViewerInteraction::new(InteractionKind::WatchComplete, x.item.to_string());
        adapter
            .update_from_interaction(
                &vi,
                x.timestamp,
                Observation {
                    query: &query,
                    item,
                },
                &pool,
                &mut self.rng,
            )
            .map_err(perr)?;
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, now: i64) -> Option<Reason> {
        self.bpr.explain(user, item, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::bpr::BprConfig;
    use crate::recommend::testutil::two_clusters;

    #[test]
    fn adapter_learns_from_observed_events_and_changes_the_ranking() {
        let ds = two_clusters(40, 20);
        let bpr = Bpr::train(
            &ds,
            &BprConfig {
                factors: 8,
                epochs: 30,
                online_steps: 0,
                ..Default::default()
            },
        )
        .unwrap();
        let mut pc = PersonalizeConfig {
            rank: 4,
            min_interval_secs: 0,
            ..Default::default()
        };
        pc.base_lr = 0.05;
        let mut m = Sona::new(
            bpr.clone(),
            &SonaConfig {
                personalize: pc,
                ..Default::default()
            },
        )
        .unwrap();
        // User 0 (first cluster) starts watching second-cluster items 10..16.
        let before = m.scores(0);
        for (t, item) in (10..16u32).enumerate() {
            m.observe(&Interaction {
                user: 0,
                item,
                rating: 5.0,
                timestamp: 10_000 + 4_000 * t as i64,
            })
            .unwrap();
        }
        let stats = m.adapter(0).unwrap().stats();
        assert!(stats.adaptations >= 1, "{stats:?}");
        let after = m.scores(0);
        // With BPR's own fold-in switched off, every change comes from the adapter:
        // the unseen second-cluster items gain on the first-cluster ones.
        assert_eq!(bpr.user_vector(0), m.bpr.user_vector(0));
        let gap = |s: &[f32]| {
            let b: f32 = (16..20).map(|i| s[i]).sum::<f32>() / 4.0;
            let a: f32 = (0..10).map(|i| s[i]).sum::<f32>() / 10.0;
            b - a
        };
        assert!(
            gap(&after) > gap(&before),
            "gap {} -> {}",
            gap(&before),
            gap(&after)
        );
        assert!(m
            .observe(&Interaction {
                user: 0,
                item: 20,
                rating: 5.0,
                timestamp: 0
            })
            .is_err());
    }
}
