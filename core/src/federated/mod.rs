//! Federated aggregation of per-viewer LoRA updates into the global tier.
//!
//! Each device sends an [`AdapterUpdate`](crate::personalize::AdapterUpdate):
//! its per-viewer factors (ΔW_u = (α/r) B_u A_u), the global version it trained
//! on, its bias-corrected EWC++ Fisher diagonal and its sample count. One round:
//!
//! 1. **Validation** ([`aggregate::check_update`]): shape, α, finiteness (NaN/inf
//!    rejected), non-negative Fisher, at least one trained sample, and the
//!    **stale-version rule**: an update trained on global version v is accepted
//!    at current version V only if `v ≤ V` and `V − v ≤ max_staleness`; its
//!    weight is multiplied by `staleness_decay^(V − v)`.
//! 2. **Norm clipping**: ΔW_u is scaled down to Frobenius norm ≤
//!    min(`clip_norm`, `clip_median_factor` × the round's median norm).
//! 3. **Weights**: ω_u[i, j] = w_u · ρ_u[i, j] with w_u = min(n_u,
//!    `max_sample_weight`) × staleness factor and ρ_u the separable Fisher
//!    importance of entry (i, j) (row mass of F_B × column mass of F_A),
//!    normalized to mean 1 and capped at `fisher_ratio_cap` so no device can
//!    concentrate its weight on a few entries.
//! 4. **Robust Fisher-weighted mean** per entry: drop the `trim_fraction`
//!    lowest and highest values (coordinate-wise trimmed mean), then
//!    m = Σ ω Δ / Σ ω over the rest; f = Σ ω / Σ w is this round's importance.
//! 5. **EWC++ toward the previous global** G: per entry minimize
//!    f (x − m)² + λ F_g (x − G)², i.e. x = (f m + λ F_g G) / (f + λ F_g),
//!    then G' = G + η (x − G); the global Fisher is updated online,
//!    F_g ← γ F_g + (1 − γ) f.
//! 6. Optional **differential privacy** ([`dp`]): uniform weights, no trim,
//!    Gaussian noise σ = z·C/n on m; ε reported by zCDP accounting.
//! 7. **Re-factorization** of the d × d G' to rank r by randomized truncated
//!    SVD ([`lowrank`]); the relative truncation error is reported.
//!
//! The global tier is the (robust, Fisher-weighted) population mean of the
//! per-viewer tiers, anchored to its previous value; it is not accumulated
//! round after round, so persistent per-viewer tiers do not make it drift.

pub mod aggregate;
pub mod dp;
pub mod lowrank;

pub use aggregate::{
    admit_validated, aggregate_round, check_update, GlobalState, Rejection, RoundReport,
};
pub use dp::{zcdp_epsilon, DpConfig};

use thiserror::Error;

use crate::codec::CodecError;
use crate::personalize::{PersonalizeConfig, PersonalizeError};

/// Errors of the federated aggregation. A rejecting call changes nothing.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FederatedError {
    #[error("invalid federated config field {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("a round needs at least {need} accepted updates, got {have}")]
    NotEnoughUpdates { need: usize, have: usize },
    #[error("global state does not match the config: {what}")]
    StateMismatch { what: String },
    #[error(transparent)]
    Personalize(#[from] PersonalizeError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Every constant of the aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct FederatedConfig {
    /// Adapter shape (must equal the devices' `PersonalizeConfig`).
    pub d: usize,
    pub rank: usize,
    pub alpha: f32,
    /// Maximum Frobenius norm of one device's ΔW_u (larger ones are scaled down).
    pub clip_norm: f32,
    /// Adaptive clipping: also clip to this multiple of the round's median
    /// norm (0 = off; ignored under DP, which needs the fixed bound).
    pub clip_median_factor: f32,
    /// Fraction of values dropped from each end per entry, in [0, 0.5).
    pub trim_fraction: f32,
    /// Updates more than this many versions behind are rejected.
    pub max_staleness: u64,
    /// Weight multiplier per version behind, in (0, 1].
    pub staleness_decay: f32,
    /// Cap on a device's sample-count weight.
    pub max_sample_weight: f32,
    /// Cap on one entry's normalized Fisher importance (mean is 1).
    pub fisher_ratio_cap: f32,
    /// EWC++ strength pulling the global toward its previous value (0 = none).
    pub ewc_lambda: f32,
    /// EWC++ decay γ of the online global Fisher.
    pub fisher_decay: f32,
    /// Server step size η in (0, 1].
    pub server_lr: f32,
    /// Fewest accepted updates for a round.
    pub min_updates: usize,
    /// Truncated SVD: extra probe columns and subspace iterations.
    pub oversample: usize,
    pub power_iters: usize,
    pub seed: u64,
    pub dp: Option<DpConfig>,
}

impl Default for FederatedConfig {
    fn default() -> Self {
        let p = PersonalizeConfig::default();
        FederatedConfig {
            d: p.d,
            rank: p.rank,
            alpha: p.alpha,
            clip_norm: 100.0,
            clip_median_factor: 3.0,
            trim_fraction: 0.1,
            max_staleness: 4,
            staleness_decay: 0.5,
            max_sample_weight: 1000.0,
            fisher_ratio_cap: 10.0,
            ewc_lambda: 0.5,
            fisher_decay: 0.9,
            server_lr: 1.0,
            min_updates: 1,
            oversample: 8,
            power_iters: 4,
            seed: 0x46_45_44,
            dp: None,
        }
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> FederatedError {
    FederatedError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

impl FederatedConfig {
    /// A config matching the devices' adapter shape.
    pub fn for_personalize(p: &PersonalizeConfig) -> Self {
        FederatedConfig {
            d: p.d,
            rank: p.rank,
            alpha: p.alpha,
            ..Default::default()
        }
    }

    /// The matching adapter config (shape only; other fields default).
    pub fn personalize(&self) -> PersonalizeConfig {
        PersonalizeConfig {
            d: self.d,
            rank: self.rank,
            alpha: self.alpha,
            ..Default::default()
        }
    }

    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    pub fn validate(&self) -> Result<(), FederatedError> {
        self.personalize().validate()?;
        let pos = |field, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("must be finite and > 0, got {v}")))
            }
        };
        pos("clip_norm", self.clip_norm)?;
        if !(self.clip_median_factor.is_finite() && self.clip_median_factor >= 0.0) {
            return Err(bad("clip_median_factor", "must be finite and ≥ 0"));
        }
        pos("max_sample_weight", self.max_sample_weight)?;
        pos("fisher_ratio_cap", self.fisher_ratio_cap)?;
        if !(0.0..0.5).contains(&self.trim_fraction) {
            return Err(bad("trim_fraction", "must be in [0, 0.5)"));
        }
        if !(self.staleness_decay > 0.0 && self.staleness_decay <= 1.0) {
            return Err(bad("staleness_decay", "must be in (0, 1]"));
        }
        if !(self.server_lr > 0.0 && self.server_lr <= 1.0) {
            return Err(bad("server_lr", "must be in (0, 1]"));
        }
        if !(self.ewc_lambda.is_finite() && self.ewc_lambda >= 0.0) {
            return Err(bad("ewc_lambda", "must be finite and ≥ 0"));
        }
        if !(0.0..1.0).contains(&self.fisher_decay) {
            return Err(bad("fisher_decay", "must be in [0, 1)"));
        }
        if self.min_updates == 0 {
            return Err(bad("min_updates", "must be ≥ 1"));
        }
        if self.power_iters > 32 || self.oversample > 64 {
            return Err(bad("power_iters/oversample", "at most 32 / 64"));
        }
        if let Some(dp) = &self.dp {
            dp.validate()?;
            if self.trim_fraction != 0.0 {
                return Err(bad(
                    "trim_fraction",
                    "must be 0 with differential privacy (the Gaussian mechanism's sensitivity assumes a plain mean)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
