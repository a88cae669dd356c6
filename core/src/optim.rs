//! Adam (Kingma & Ba, 2015) over flat parameter buffers.
//!
//! Models keep their parameters in named flat `Vec<f32>` tensors; one `Adam`
//! state per tensor keeps the optimiser independent of any model layout.

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (AdamW); 0 disables it.
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moment estimates for one parameter tensor.
#[derive(Clone, Debug, Default)]
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u64,
}

impl Adam {
    /// Optimiser state for a tensor of `len` parameters.
    pub fn new(len: usize) -> Self {
        Adam {
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// Number of steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One Adam step: `params -= lr · m̂ / (√v̂ + ε)` (+ decoupled decay).
    /// `mask`, when given, freezes entries where it is `false` (used for
    /// fixed-support retraining after hard thresholding).
    pub fn step(
        &mut self,
        cfg: &AdamConfig,
        params: &mut [f32],
        grad: &[f32],
        mask: Option<&[bool]>,
    ) {
        assert_eq!(
            params.len(),
            grad.len(),
            "Adam: params/grad length mismatch"
        );
        assert_eq!(params.len(), self.m.len(), "Adam: state length mismatch");
        self.t += 1;
        let bc1 = 1.0 - cfg.beta1.powi(self.t as i32);
        let bc2 = 1.0 - cfg.beta2.powi(self.t as i32);
        for i in 0..params.len() {
            if let Some(mk) = mask {
                if !mk[i] {
                    continue;
                }
            }
            let g = grad[i];
            self.m[i] = cfg.beta1 * self.m[i] + (1.0 - cfg.beta1) * g;
            self.v[i] = cfg.beta2 * self.v[i] + (1.0 - cfg.beta2) * g * g;
            let mhat = self.m[i] / bc1;
            let vhat = self.v[i] / bc2;
            params[i] -= cfg.lr * (mhat / (vhat.sqrt() + cfg.eps) + cfg.weight_decay * params[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_minimises_a_quadratic() {
        // f(x) = Σ (x_i - c_i)^2, gradient 2(x - c).
        let c = [3.0f32, -2.0, 0.5];
        let mut x = [0.0f32; 3];
        let mut opt = Adam::new(3);
        let cfg = AdamConfig {
            lr: 0.05,
            ..Default::default()
        };
        for _ in 0..2000 {
            let g: Vec<f32> = x.iter().zip(&c).map(|(a, b)| 2.0 * (a - b)).collect();
            opt.step(&cfg, &mut x, &g, None);
        }
        for (a, b) in x.iter().zip(&c) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn first_step_moves_by_lr_in_sign_of_gradient() {
        let mut x = [1.0f32, 1.0];
        let mut opt = Adam::new(2);
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        opt.step(&cfg, &mut x, &[5.0, -0.001], None);
        assert!((x[0] - 0.9).abs() < 1e-5);
        assert!((x[1] - 1.1).abs() < 1e-3);
    }

    #[test]
    fn mask_freezes_entries() {
        let mut x = [1.0f32, 1.0];
        let mut opt = Adam::new(2);
        opt.step(
            &AdamConfig::default(),
            &mut x,
            &[1.0, 1.0],
            Some(&[true, false]),
        );
        assert!(x[0] < 1.0);
        assert_eq!(x[1], 1.0);
    }
}
