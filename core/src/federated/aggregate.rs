//! One aggregation round (see the module docs for the math) and the server's
//! persistent global state.

use serde::{Deserialize, Serialize};

use super::lowrank::{dense_product, frobenius, to_factors, truncated_svd};
use super::{dp::zcdp_epsilon, FederatedConfig, FederatedError};
use crate::codec::{open_msgpack, seal_msgpack};
use crate::personalize::format::f32_le;
use crate::personalize::{AdapterUpdate, GlobalAdapter};
use crate::rng::Rng;

pub const STATE_MAGIC: [u8; 4] = *b"SNFS";
pub const STATE_FORMAT_VERSION: u16 = 1;

/// The server's global tier plus what aggregation remembers between rounds:
/// the online global Fisher (d × d) and the number of DP rounds spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalState {
    pub version: u64,
    pub d: u32,
    pub rank: u32,
    pub alpha: f32,
    #[serde(with = "f32_le")]
    pub a: Vec<f32>,
    #[serde(with = "f32_le")]
    pub b: Vec<f32>,
    /// Online EWC++ importance of each entry of the global ΔW (d × d).
    #[serde(with = "f32_le")]
    pub fisher: Vec<f32>,
    pub dp_rounds: u64,
}

impl GlobalState {
    /// Version 0: zero global tier, zero Fisher.
    pub fn new(cfg: &FederatedConfig) -> Self {
        let (d, r) = (cfg.d, cfg.rank);
        GlobalState {
            version: 0,
            d: d as u32,
            rank: r as u32,
            alpha: cfg.alpha,
            a: vec![0.0; r * d],
            b: vec![0.0; d * r],
            fisher: vec![0.0; d * d],
            dp_rounds: 0,
        }
    }

    fn check(&self, cfg: &FederatedConfig) -> Result<(), FederatedError> {
        let (d, r) = (cfg.d, cfg.rank);
        let ok = self.d as usize == d
            && self.rank as usize == r
            && self.alpha == cfg.alpha
            && self.a.len() == r * d
            && self.b.len() == d * r
            && self.fisher.len() == d * d;
        if !ok {
            return Err(FederatedError::StateMismatch {
                what: format!(
                    "state (d {}, rank {}, alpha {}) vs config (d {d}, rank {r}, alpha {})",
                    self.d, self.rank, self.alpha, cfg.alpha
                ),
            });
        }
        if self
            .a
            .iter()
            .chain(&self.b)
            .chain(&self.fisher)
            .any(|x| !x.is_finite())
            || self.fisher.iter().any(|&x| x < 0.0)
        {
            return Err(FederatedError::StateMismatch {
                what: "non-finite factors or negative Fisher".into(),
            });
        }
        Ok(())
    }

    /// `SNFS` envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        seal_msgpack(STATE_MAGIC, STATE_FORMAT_VERSION, self)
    }

    /// Decode and check against `cfg`.
    pub fn from_bytes(bytes: &[u8], cfg: &FederatedConfig) -> Result<Self, FederatedError> {
        let s: GlobalState =
            open_msgpack("federated state", STATE_MAGIC, STATE_FORMAT_VERSION, bytes)?;
        s.check(cfg)?;
        Ok(s)
    }

    /// The global tier devices load.
    pub fn global_adapter(&self, cfg: &FederatedConfig) -> Result<GlobalAdapter, FederatedError> {
        Ok(GlobalAdapter::from_factors(
            self.version,
            &cfg.personalize(),
            self.a.clone(),
            self.b.clone(),
        )?)
    }

    /// `SNAG` bytes for [`crate::personalize::Adapter::apply_global`].
    pub fn global_bytes(&self, cfg: &FederatedConfig) -> Result<Vec<u8>, FederatedError> {
        Ok(self.global_adapter(cfg)?.to_bytes())
    }

    /// Dense global ΔW_g = (α/r) B A (d × d).
    pub fn dense(&self) -> Vec<f32> {
        let (d, r) = (self.d as usize, self.rank as usize);
        dense_product(&self.a, &self.b, d, r, self.alpha / r as f32)
    }
}

/// Why one update was left out of a round.
#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// Wrong shape, α or scale, NaN/inf, negative Fisher (the message says which).
    Invalid(String),
    /// No trained samples: nothing to contribute.
    Empty,
    /// Trained on a global version the server has not published.
    FromFuture { update: u64, current: u64 },
    /// More than `max_staleness` versions behind.
    Stale { update: u64, current: u64, max: u64 },
}

/// The stale-version rule and validation for one update at server version
/// `current`. Returns the update's weight multiplier `staleness_decay^lag`.
pub fn check_update(
    cfg: &FederatedConfig,
    current: u64,
    u: &AdapterUpdate,
) -> Result<f32, Rejection> {
    u.validate()
        .map_err(|e| Rejection::Invalid(e.to_string()))?;
    admit_validated(cfg, current, u)
}

/// [`check_update`] for an update whose contents already passed
/// `AdapterUpdate::validate` (every `AdapterUpdate::from_bytes` result has):
/// the server's shape, the stale-version rule and the sample count, without
/// scanning the factors a second time.
pub fn admit_validated(
    cfg: &FederatedConfig,
    current: u64,
    u: &AdapterUpdate,
) -> Result<f32, Rejection> {
    if u.d as usize != cfg.d || u.rank as usize != cfg.rank || u.alpha != cfg.alpha {
        return Err(Rejection::Invalid(format!(
            "shape (d {}, rank {}, alpha {}) ≠ server (d {}, rank {}, alpha {})",
            u.d, u.rank, u.alpha, cfg.d, cfg.rank, cfg.alpha
        )));
    }
    if u.global_version > current {
        return Err(Rejection::FromFuture {
            update: u.global_version,
            current,
        });
    }
    let lag = current - u.global_version;
    if lag > cfg.max_staleness {
        return Err(Rejection::Stale {
            update: u.global_version,
            current,
            max: cfg.max_staleness,
        });
    }
    if u.sample_count == 0 {
        return Err(Rejection::Empty);
    }
    Ok(cfg.staleness_decay.powi(lag.min(i32::MAX as u64) as i32))
}

/// What a round did.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundReport {
    pub version: u64,
    pub accepted: usize,
    /// (user id, reason) of every update left out.
    pub rejected: Vec<(String, Rejection)>,
    /// Updates scaled down to `clip_norm`.
    pub clipped: usize,
    /// Values dropped from each end per entry by the trimmed mean.
    pub trimmed_per_side: usize,
    /// ‖G' − G‖_F before re-factorization.
    pub step_norm: f64,
    /// ‖G' − refactorized G'‖_F / ‖G'‖_F (0 when G' = 0).
    pub refactor_rel_error: f64,
    /// Cumulative (ε, δ) when DP is on.
    pub epsilon: Option<(f64, f64)>,
}

/// The robust Fisher-weighted mean of the accepted, clipped updates: per entry
/// `(m, f)` = (weighted mean, importance Σω / Σw), before EWC and DP. Exposed
/// for tests and diagnostics; [`aggregate_round`] uses it.
pub fn robust_weighted_mean(
    cfg: &FederatedConfig,
    current: u64,
    updates: &[AdapterUpdate],
) -> (Vec<f32>, Vec<f32>, RoundReport) {
    let (d, r) = (cfg.d, cfg.rank);
    let dd = d * d;
    let mut report = RoundReport {
        version: current,
        accepted: 0,
        rejected: Vec::new(),
        clipped: 0,
        trimmed_per_side: 0,
        step_norm: 0.0,
        refactor_rel_error: 0.0,
        epsilon: None,
    };
    // Accepted: (dense clipped ΔW_u, row importance, col importance, weight w_u).
    let mut deltas: Vec<Vec<f32>> = Vec::new();
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut cols: Vec<Vec<f32>> = Vec::new();
    let mut ws: Vec<f32> = Vec::new();
    let uniform = cfg.dp.is_some();
    let mut accepted: Vec<(&AdapterUpdate, f32, Vec<f32>, f64)> = Vec::new();
    for u in updates {
        let decay = match check_update(cfg, current, u) {
            Ok(x) => x,
            Err(why) => {
                report.rejected.push((u.user_id.clone(), why));
                continue;
            }
        };
        let delta = dense_product(&u.a, &u.b, d, r, cfg.scale());
        let norm = frobenius(&delta);
        if !norm.is_finite() {
            report.rejected.push((
                u.user_id.clone(),
                Rejection::Invalid("ΔW overflows f32".into()),
            ));
            continue;
        }
        accepted.push((u, decay, delta, norm));
    }
    // Clip bound: clip_norm, tightened to clip_median_factor × the round's
    // median norm (only the fixed clip_norm under DP, whose noise scale needs it).
    let mut clip = cfg.clip_norm as f64;
    if !uniform && cfg.clip_median_factor > 0.0 && !accepted.is_empty() {
        let mut norms: Vec<f64> = accepted.iter().map(|x| x.3).collect();
        norms.sort_by(f64::total_cmp);
        let median = norms[norms.len() / 2];
        if median > 0.0 {
            clip = clip.min(cfg.clip_median_factor as f64 * median);
        }
    }
    for (u, decay, mut delta, norm) in accepted {
        if norm > clip {
            let k = (clip / norm) as f32;
            delta.iter_mut().for_each(|x| *x *= k);
            report.clipped += 1;
        }
        let (row, col) = if uniform {
            (vec![1.0; d], vec![1.0; d])
        } else {
            // Row i of ΔW is output dim i (B's row), column j input dim j (A's column).
            let row: Vec<f32> = (0..d)
                .map(|i| u.fisher_b[i * r..(i + 1) * r].iter().sum())
                .collect();
            let col: Vec<f32> = (0..d)
                .map(|j| (0..r).map(|t| u.fisher_a[t * d + j]).sum())
                .collect();
            let (sr, sc) = (row.iter().sum::<f32>(), col.iter().sum::<f32>());
            if sr > 0.0 && sc > 0.0 && sr.is_finite() && sc.is_finite() {
                // Normalized so the mean of row[i]·col[j] over entries is 1.
                let (kr, kc) = (d as f32 / sr, d as f32 / sc);
                (
                    row.iter().map(|x| x * kr).collect(),
                    col.iter().map(|x| x * kc).collect(),
                )
            } else {
                (vec![1.0; d], vec![1.0; d])
            }
        };
        let w = if uniform {
            1.0
        } else {
            (u.sample_count as f32).min(cfg.max_sample_weight) * decay
        };
        deltas.push(delta);
        rows.push(row);
        cols.push(col);
        ws.push(w);
    }
    let n = deltas.len();
    report.accepted = n;
    let mut mean = vec![0f32; dd];
    let mut importance = vec![0f32; dd];
    if n == 0 {
        return (mean, importance, report);
    }
    let k = (cfg.trim_fraction * n as f32).floor() as usize;
    let k = k.min((n - 1) / 2);
    report.trimmed_per_side = k;
    let cap = cfg.fisher_ratio_cap;
    // (value, ω, w) per client for one entry.
    let mut vals: Vec<(f32, f64, f64)> = Vec::with_capacity(n);
    for i in 0..d {
        for j in 0..d {
            let c = i * d + j;
            vals.clear();
            let clients = deltas.iter().zip(&rows).zip(&cols).zip(&ws);
            for (((delta, row), col), &w) in clients {
                let omega = w as f64 * (row[i] * col[j]).min(cap) as f64;
                vals.push((delta[c], omega, w as f64));
            }
            if k > 0 {
                vals.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
            }
            let kept = &vals[k..n - k];
            // Σw over the kept clients of this entry: with a uniform Fisher
            // (ω = w) the importance is exactly 1 whichever clients were trimmed.
            let (mut num, mut den, mut kept_w) = (0f64, 0f64, 0f64);
            for &(x, om, w) in kept {
                num += om * x as f64;
                den += om;
                kept_w += w;
            }
            if den > 0.0 {
                mean[c] = (num / den) as f32;
                importance[c] = (den / kept_w.max(1e-30)) as f32;
            }
        }
    }
    (mean, importance, report)
}

/// One aggregation round over `updates` at `state.version`. Returns the new
/// state (version + 1) and the report; `state` itself is never modified, and
/// an error (config, state mismatch, too few accepted updates) publishes nothing.
pub fn aggregate_round(
    cfg: &FederatedConfig,
    state: &GlobalState,
    updates: &[AdapterUpdate],
) -> Result<(GlobalState, RoundReport), FederatedError> {
    cfg.validate()?;
    state.check(cfg)?;
    let (d, r) = (cfg.d, cfg.rank);
    let (mut mean, importance, mut report) = robust_weighted_mean(cfg, state.version, updates);
    if report.accepted < cfg.min_updates {
        return Err(FederatedError::NotEnoughUpdates {
            need: cfg.min_updates,
            have: report.accepted,
        });
    }
    let mut rng = Rng::new(cfg.seed ^ state.version.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut dp_rounds = state.dp_rounds;
    if let Some(dp) = &cfg.dp {
        dp.add_noise(&mut mean, cfg.clip_norm, report.accepted, &mut rng);
        dp_rounds += 1;
        report.epsilon = Some((
            zcdp_epsilon(dp.noise_multiplier, dp_rounds, dp.delta),
            dp.delta,
        ));
    }
    let prev = state.dense();
    let (lambda, gamma, eta) = (cfg.ewc_lambda, cfg.fisher_decay, cfg.server_lr);
    let mut next = vec![0f32; d * d];
    let mut fisher = vec![0f32; d * d];
    let mut step2 = 0f64;
    for c in 0..d * d {
        let (f, g, fg) = (importance[c], prev[c], state.fisher[c]);
        let pull = lambda * fg;
        let x = if f + pull > 0.0 {
            (f * mean[c] + pull * g) / (f + pull)
        } else {
            g
        };
        let x = g + eta * (x - g);
        step2 += ((x - g) as f64).powi(2);
        next[c] = x;
        fisher[c] = gamma * fg + (1.0 - gamma) * f;
    }
    report.step_norm = step2.sqrt();
    let svd = truncated_svd(&next, d, r, cfg.oversample, cfg.power_iters, &mut rng);
    let (a, b) = to_factors(&svd, d, r, cfg.scale());
    let approx = dense_product(&a, &b, d, r, cfg.scale());
    let total = frobenius(&next);
    let err: f64 = next
        .iter()
        .zip(&approx)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    report.refactor_rel_error = if total > 0.0 { err / total } else { 0.0 };
    report.version = state.version + 1;
    Ok((
        GlobalState {
            version: state.version + 1,
            d: d as u32,
            rank: r as u32,
            alpha: cfg.alpha,
            a,
            b,
            fisher,
            dp_rounds,
        },
        report,
    ))
}
