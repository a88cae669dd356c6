//! Every tunable constant of on-device personalization, in one serde struct.

use serde::{Deserialize, Serialize};

use super::PersonalizeError;

/// How adapter tensors are stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// 4 bytes per value, lossless.
    F32,
    /// IEEE half precision (2 bytes per value, ~3 significant digits).
    F16,
}

impl Dtype {
    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Dtype> {
        match c {
            0 => Some(Dtype::F32),
            1 => Some(Dtype::F16),
            _ => None,
        }
    }
}

/// How the EWC++ Fisher diagonal is persisted.
///
/// In memory the Fisher is always the exact diagonal over every entry of `A`
/// and `B`. On disk `Separable` keeps, per factor, its row and column sums
/// (8-bit log-quantized) and reloads `F[i,j] ≈ row_i · col_j / total`. This is
/// exact whenever the Fisher of a factor is rank one — which it is when all
/// training interactions share one query embedding (a profile embedding), since
/// every per-pair squared gradient is then an outer product with the same
/// `q²` / `(A q)²` vector — and otherwise preserves each row's, each column's
/// and the total Fisher mass. It costs `2·(d + r)` bytes instead of
/// `2·d·r·dtype` bytes, which is what keeps a d = 384, r = 8 adapter under
/// 26 KB (f32) / 14 KB (f16). `Full` stores the diagonal in the adapter dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FisherStorage {
    Separable,
    Full,
}

/// How the Fisher diagonal is scaled inside the EWC++ penalty.
///
/// `MeanOne` (default): the penalty uses `F̂ / mean(F̂)`, a dimensionless
/// per-parameter importance, so λ is the trade-off between "keep what was
/// learned" and the new BPR loss independently of embedding scale, rank and how
/// confident the model already is. The raw Fisher of a BPR likelihood shrinks
/// with σ(x)σ(−x) as pairs become well separated, so with `Raw` the useful λ
/// depends on the data (measured: ~5000 on the synthetic forgetting task,
/// where λ ≤ 500 has no effect). The stored and exported Fisher is always the
/// raw (bias-corrected) one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FisherScale {
    MeanOne,
    Raw,
}

/// Where the EWC++ penalty anchors the per-viewer adapter.
///
/// `Consolidated` (default): θ* is the adapter as it was at the end of the
/// previous adaptation (at creation: its starting point, i.e. zero delta).
/// Between adaptations θ == θ*, so nothing extra is stored. This is the online
/// EWC / EWC++ choice: the Fisher measures how much the *previously learned*
/// preferences depend on each parameter, so the penalty must pull toward the
/// values that encode them.
///
/// `Initial`: θ* is always the starting point (zero delta). The penalty then
/// becomes a Fisher-weighted pull back toward the population model, which
/// undoes exactly the parameters the Fisher marks as important; the forgetting
/// test prints this variant next to the others to show why it is not the
/// default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EwcAnchor {
    Consolidated,
    Initial,
}

/// All constants of the personalization layer. `Default` is the product setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersonalizeConfig {
    // ---- adapter shape ----
    /// Embedding dimension (query and item space).
    pub d: usize,
    /// LoRA rank r (4..=16).
    pub rank: usize,
    /// LoRA α; the update is scaled by α / r.
    pub alpha: f32,
    /// `A` starts uniform in ±`init_scale / √d`; `B` starts at zero.
    pub init_scale: f32,
    /// Mixed with a hash of the user id to seed `A`'s initialization.
    pub seed: u64,

    // ---- signal strengths (ordering: complete > rating 5 > start > click > 0 > skip) ----
    pub watch_complete_strength: f32,
    /// Strength of a 5-star rating; 1 star gives its negative, 3 stars zero (linear).
    pub rating_max_strength: f32,
    pub watch_start_strength: f32,
    pub search_click_strength: f32,
    /// Negative.
    pub skip_strength: f32,
    /// Watched fraction above which a watch counts as `watch_complete`.
    pub watch_complete_threshold: f32,

    // ---- learning ----
    /// Adam learning rate before decay.
    pub base_lr: f32,
    /// Adam moment decays and ε (fresh moments at every adaptation).
    pub adam_beta1: f32,
    pub adam_beta2: f32,
    pub adam_eps: f32,
    /// lr = base_lr · max(1 − interactions / max_interactions, min_lr_fraction).
    pub max_interactions: u64,
    pub min_lr_fraction: f32,
    /// Adam steps run over the buffered pairs at each adaptation.
    pub steps_per_adaptation: usize,
    /// Items sampled (with replacement) from the caller's negative pool per buffered interaction.
    pub negatives_per_observation: usize,
    /// Most interactions kept for the next adaptation (oldest dropped first).
    pub max_pending: usize,
    /// Optional max-norm constraint on the per-viewer update: after each
    /// adaptation, if ‖(α/r) B_u A_u‖_F exceeds it, B_u is scaled down onto the
    /// ball (ΔW is linear in B). Bounds how far personalization can move any
    /// unit query (‖ΔW q‖ ≤ ‖ΔW‖_F). `None` (default): unconstrained; BPR with
    /// Adam keeps growing margins (measured update norms 13–17 after 24
    /// interactions in the learning tests).
    pub max_update_norm: Option<f32>,

    // ---- EWC++ ----
    /// λ in λ/2 · Σ F (θ − θ*)².
    pub ewc_lambda: f32,
    /// γ in F ← γ F + (1 − γ) F_new (one Fisher update per adaptation).
    pub fisher_decay: f32,
    pub fisher_scale: FisherScale,
    pub ewc_anchor: EwcAnchor,

    // ---- adaptation decision ----
    /// Interactions since the last adaptation needed before adapting.
    pub min_interactions: usize,
    /// Seconds since the last adaptation needed before adapting.
    pub min_interval_secs: i64,
    /// Accumulated |signal strength| since the last adaptation must exceed this.
    pub min_signal: f32,

    // ---- storage ----
    pub dtype: Dtype,
    pub fisher_storage: FisherStorage,
}

impl Default for PersonalizeConfig {
    fn default() -> Self {
        PersonalizeConfig {
            d: 384,
            rank: 8,
            alpha: 16.0,
            init_scale: 1.0,
            seed: 0x50_4E_41_4C,
            watch_complete_strength: 1.0,
            rating_max_strength: 0.8,
            watch_start_strength: 0.5,
            search_click_strength: 0.3,
            skip_strength: -0.6,
            watch_complete_threshold: 0.9,
            base_lr: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_interactions: 1000,
            min_lr_fraction: 0.1,
            steps_per_adaptation: 20,
            negatives_per_observation: 4,
            max_pending: 64,
            max_update_norm: None,
            ewc_lambda: 0.5,
            fisher_decay: 0.9,
            fisher_scale: FisherScale::MeanOne,
            ewc_anchor: EwcAnchor::Consolidated,
            min_interactions: 5,
            min_interval_secs: 3600,
            min_signal: 0.7,
            dtype: Dtype::F32,
            fisher_storage: FisherStorage::Separable,
        }
    }
}

/// Largest embedding dimension accepted (bounds allocations from corrupt files).
pub const MAX_DIM: usize = 8192;

/// Most f32 values one adaptation's training pairs may take (2^26, 256 MiB); see
/// [`PersonalizeConfig::validate`].
pub const MAX_TRAIN_FLOATS: u64 = 1 << 26;

/// Smallest and largest LoRA rank.
pub const MIN_RANK: usize = 4;
pub const MAX_RANK: usize = 16;

fn bad(field: &'static str, reason: impl Into<String>) -> PersonalizeError {
    PersonalizeError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

fn finite(field: &'static str, v: f32) -> Result<(), PersonalizeError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(bad(field, format!("must be finite, got {v}")))
    }
}

impl PersonalizeConfig {
    /// LoRA scale α / r.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Learning rate after `interactions` interactions.
    pub fn lr_at(&self, interactions: u64) -> f32 {
        let frac = 1.0 - interactions as f64 / self.max_interactions as f64;
        self.base_lr * (frac as f32).max(self.min_lr_fraction)
    }

    /// Check every field; a bad config is rejected before any adapter uses it.
    pub fn validate(&self) -> Result<(), PersonalizeError> {
        if self.d == 0 || self.d > MAX_DIM {
            return Err(bad(
                "d",
                format!("must be in 1..={MAX_DIM}, got {}", self.d),
            ));
        }
        if !(MIN_RANK..=MAX_RANK).contains(&self.rank) || self.rank > self.d {
            return Err(bad(
                "rank",
                format!(
                    "must be in {MIN_RANK}..={MAX_RANK} and ≤ d = {}, got {}",
                    self.d, self.rank
                ),
            ));
        }
        for (f, v) in [
            ("alpha", self.alpha),
            ("init_scale", self.init_scale),
            ("watch_complete_strength", self.watch_complete_strength),
            ("rating_max_strength", self.rating_max_strength),
            ("watch_start_strength", self.watch_start_strength),
            ("search_click_strength", self.search_click_strength),
            ("base_lr", self.base_lr),
        ] {
            finite(f, v)?;
            if v <= 0.0 {
                return Err(bad(f, format!("must be > 0, got {v}")));
            }
        }
        for (f, v) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            finite(f, v)?;
            if !(0.0..1.0).contains(&v) {
                return Err(bad(f, format!("must be in [0, 1), got {v}")));
            }
        }
        finite("adam_eps", self.adam_eps)?;
        if self.adam_eps <= 0.0 {
            return Err(bad("adam_eps", "must be > 0"));
        }
        finite("skip_strength", self.skip_strength)?;
        if self.skip_strength >= 0.0 {
            return Err(bad(
                "skip_strength",
                format!("must be < 0, got {}", self.skip_strength),
            ));
        }
        finite("watch_complete_threshold", self.watch_complete_threshold)?;
        if !(self.watch_complete_threshold > 0.0 && self.watch_complete_threshold <= 1.0) {
            return Err(bad("watch_complete_threshold", "must be in (0, 1]"));
        }
        if self.max_interactions == 0 {
            return Err(bad("max_interactions", "must be ≥ 1"));
        }
        finite("min_lr_fraction", self.min_lr_fraction)?;
        if !(self.min_lr_fraction > 0.0 && self.min_lr_fraction <= 1.0) {
            return Err(bad(
                "min_lr_fraction",
                "must be in (0, 1] so the rate never reaches zero",
            ));
        }
        if self.steps_per_adaptation == 0 || self.steps_per_adaptation > 10_000 {
            return Err(bad("steps_per_adaptation", "must be in 1..=10000"));
        }
        if self.negatives_per_observation > 1024 {
            return Err(bad("negatives_per_observation", "must be ≤ 1024"));
        }
        if self.max_pending == 0 || self.max_pending > 4096 {
            return Err(bad("max_pending", "must be in 1..=4096"));
        }
        // One adaptation pairs each buffered positive with every buffered negative
        // and `negatives_per_observation` catalog titles, d floats a pair. With p + q
        // ≤ max_pending that is at most (m²/4 + k·m)·d floats: bound it, or settings
        // that each pass above ask a TV for gigabytes on the first flush.
        let (m, k) = (
            self.max_pending as u64,
            self.negatives_per_observation as u64,
        );
        let floats = (m * m / 4 + k * m) * self.d as u64;
        if floats > MAX_TRAIN_FLOATS {
            return Err(bad(
                "max_pending",
                format!(
                    "max_pending {m} with negatives_per_observation {k} and d {} needs up to \
                     {floats} floats ({} MiB) of training pairs per adaptation; the limit is \
                     {MAX_TRAIN_FLOATS} (256 MiB): lower one of them",
                    self.d,
                    (floats * 4) >> 20
                ),
            ));
        }
        if let Some(m) = self.max_update_norm {
            finite("max_update_norm", m)?;
            if m <= 0.0 {
                return Err(bad("max_update_norm", "must be > 0"));
            }
        }
        finite("ewc_lambda", self.ewc_lambda)?;
        if self.ewc_lambda < 0.0 {
            return Err(bad("ewc_lambda", "must be ≥ 0"));
        }
        finite("fisher_decay", self.fisher_decay)?;
        if !(0.0..1.0).contains(&self.fisher_decay) {
            return Err(bad("fisher_decay", "must be in [0, 1)"));
        }
        if self.min_interactions == 0 {
            return Err(bad("min_interactions", "must be ≥ 1"));
        }
        if self.min_interval_secs < 0 {
            return Err(bad("min_interval_secs", "must be ≥ 0"));
        }
        finite("min_signal", self.min_signal)?;
        if self.min_signal < 0.0 {
            return Err(bad("min_signal", "must be ≥ 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_json() {
        let c = PersonalizeConfig::default();
        c.validate().unwrap();
        let s = serde_json::to_string(&c).unwrap();
        let back: PersonalizeConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(c, back);
        // Missing fields take defaults.
        let partial: PersonalizeConfig = serde_json::from_str(r#"{"rank": 4}"#).unwrap();
        assert_eq!(partial.rank, 4);
        assert_eq!(partial.d, 384);
    }

    #[test]
    fn lr_schedule_decays_and_is_floored_above_zero() {
        let c = PersonalizeConfig::default();
        assert_eq!(c.lr_at(0), c.base_lr);
        assert!((c.lr_at(500) - 0.5 * c.base_lr).abs() < 1e-7);
        assert_eq!(c.lr_at(1_000_000), c.base_lr * c.min_lr_fraction);
        assert!(c.lr_at(u64::MAX) > 0.0);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(PersonalizeConfig, &str)> = vec![
            (
                PersonalizeConfig {
                    rank: 3,
                    ..Default::default()
                },
                "rank",
            ),
            (
                PersonalizeConfig {
                    rank: 17,
                    ..Default::default()
                },
                "rank",
            ),
            (
                PersonalizeConfig {
                    alpha: f32::NAN,
                    ..Default::default()
                },
                "alpha",
            ),
            (
                PersonalizeConfig {
                    skip_strength: 0.2,
                    ..Default::default()
                },
                "skip_strength",
            ),
            (
                PersonalizeConfig {
                    min_lr_fraction: 0.0,
                    ..Default::default()
                },
                "min_lr_fraction",
            ),
            (
                PersonalizeConfig {
                    fisher_decay: 1.0,
                    ..Default::default()
                },
                "fisher_decay",
            ),
            (
                PersonalizeConfig {
                    d: 0,
                    ..Default::default()
                },
                "d",
            ),
            // Each within its own range, together ~6 GB of training pairs.
            (
                PersonalizeConfig {
                    max_pending: 4096,
                    negatives_per_observation: 1024,
                    ..Default::default()
                },
                "max_pending",
            ),
        ];
        // The combined bound leaves room: a buffer 8× the default, and the largest d
        // with the default buffer.
        for ok in [
            PersonalizeConfig {
                max_pending: 512,
                ..Default::default()
            },
            PersonalizeConfig {
                d: MAX_DIM,
                ..Default::default()
            },
        ] {
            ok.validate().unwrap();
        }
        for (c, field) in cases {
            match c.validate() {
                Err(PersonalizeError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidConfig({field}), got {other:?}"),
            }
        }
    }
}
