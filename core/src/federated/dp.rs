//! Optional differential privacy for a round: the Gaussian mechanism on the
//! mean of clipped updates, with zero-concentrated DP accounting.
//!
//! With every ΔW_u clipped to Frobenius norm C and a plain (uniform-weight)
//! mean over n devices, adding or removing one device moves the mean by at
//! most C / n in L2 (n taken as the round's accepted count, as in DP-FedAvg).
//! Noise N(0, (z C / n)²) per entry gives ρ = 1 / (2 z²)-zCDP per round
//! (Bun & Steinke 2016); T rounds compose to ρ_T = T ρ, and
//! ε(δ) = ρ_T + 2 √(ρ_T ln(1/δ)).

use super::FederatedError;
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct DpConfig {
    /// Noise multiplier z (σ = z · clip_norm / n).
    pub noise_multiplier: f32,
    /// δ of the reported (ε, δ) guarantee.
    pub delta: f64,
}

impl DpConfig {
    pub fn validate(&self) -> Result<(), FederatedError> {
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier > 0.0) {
            return Err(FederatedError::InvalidConfig {
                field: "dp.noise_multiplier",
                reason: format!("must be finite and > 0, got {}", self.noise_multiplier),
            });
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(FederatedError::InvalidConfig {
                field: "dp.delta",
                reason: format!("must be in (0, 1), got {}", self.delta),
            });
        }
        Ok(())
    }

    /// Per-entry noise standard deviation for a round of `n` devices.
    pub fn sigma(&self, clip_norm: f32, n: usize) -> f32 {
        self.noise_multiplier * clip_norm / n.max(1) as f32
    }

    /// Add the round's Gaussian noise to `mean` in place.
    pub fn add_noise(&self, mean: &mut [f32], clip_norm: f32, n: usize, rng: &mut Rng) {
        let sigma = self.sigma(clip_norm, n);
        mean.iter_mut().for_each(|x| *x += sigma * rng.normal());
    }
}

/// ε after `rounds` Gaussian-mechanism rounds with noise multiplier `z` at `delta`.
pub fn zcdp_epsilon(z: f32, rounds: u64, delta: f64) -> f64 {
    if rounds == 0 {
        return 0.0;
    }
    let rho = rounds as f64 / (2.0 * (z as f64).powi(2));
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}
