//! A trained (f32) FastGRNN classifier and its training loop: BPTT + Adam, word
//! dropout, typo augmentation, input noise, and iterative hard thresholding
//! (dense phase → thresholding phase → fixed-support retraining).

use super::error::RouterError;
use super::fastgrnn::{
    backward_embed, backward_smoothed, embed_input, forward, loss, Cache, InputKind, ModelConfig,
    Params, SeqInput, N_TENSORS,
};
use super::tokenizer::{words, Tokenizer, Tokens};
use crate::optim::{Adam, AdamConfig};
use crate::rng::Rng;

/// A FastGRNN classifier with f32 parameters and named classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Classifier {
    pub cfg: ModelConfig,
    pub params: Params<f32>,
    /// Class names, index = class id.
    pub labels: Vec<String>,
}

/// Iterative hard thresholding schedule (fractions of the epochs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SparsityConfig {
    /// Fraction of `W` (or `W₁`, `W₂`) entries kept.
    pub keep_w: f32,
    /// Fraction of `U` (or `U₁`, `U₂`) entries kept.
    pub keep_u: f32,
    /// Epoch fraction trained dense before thresholding starts.
    pub dense_frac: f32,
    /// Epoch fraction with hard thresholding after every step; the rest
    /// retrains on the then-fixed support (Adam freeze mask).
    pub iht_frac: f32,
}

/// Training hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    /// Learning rate decays linearly to `lr · lr_final_frac`.
    pub lr_final_frac: f32,
    pub weight_decay: f32,
    /// Probability of dropping each word (text models; at least one word stays).
    pub word_dropout: f32,
    /// Probability of one random character edit per word of ≥ 4 chars.
    pub typo_prob: f32,
    /// Std-dev of Gaussian noise added to every step input.
    pub input_noise: f32,
    /// Global gradient-norm clip (per batch).
    pub clip_norm: f32,
    pub sparsity: Option<SparsityConfig>,
    /// When set, the returned weights are an exponential moving average of the
    /// iterates (decay per step), which smooths out the last steps' noise.
    pub ema_decay: Option<f32>,
    /// Label smoothing ε of the training loss (0 = plain cross-entropy).
    pub label_smoothing: f32,
    /// Probability of swapping a word with its right neighbour (text models; word-order
    /// noise). 0 leaves the order, and the random stream, untouched.
    pub word_swap: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 12,
            batch_size: 32,
            lr: 0.01,
            lr_final_frac: 0.05,
            weight_decay: 0.0,
            word_dropout: 0.1,
            typo_prob: 0.05,
            input_noise: 0.05,
            clip_norm: 5.0,
            sparsity: None,
            ema_decay: None,
            label_smoothing: 0.0,
            word_swap: 0.0,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), RouterError> {
        let bad = |m: &str| Err(RouterError::InvalidConfig(m.to_string()));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch_size must be > 0");
        }
        let probs = [
            self.word_dropout,
            self.typo_prob,
            self.lr_final_frac,
            self.label_smoothing,
            self.word_swap,
        ];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return bad(
                "word_dropout, typo_prob, lr_final_frac, label_smoothing, word_swap must be in [0, 1]",
            );
        }
        let pos = [self.lr, self.clip_norm];
        if pos.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return bad("lr and clip_norm must be finite and > 0");
        }
        if !self.input_noise.is_finite()
            || self.input_noise < 0.0
            || !self.weight_decay.is_finite()
            || self.weight_decay < 0.0
        {
            return bad("input_noise and weight_decay must be finite and >= 0");
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return bad("ema_decay must be in [0, 1)");
            }
        }
        if let Some(s) = self.sparsity {
            let fr = [s.keep_w, s.keep_u, s.dense_frac, s.iht_frac];
            if fr.iter().any(|v| !(0.0..=1.0).contains(v))
                || s.keep_w == 0.0
                || s.keep_u == 0.0
                || s.dense_frac + s.iht_frac > 1.0
            {
                return bad("sparsity: keep fractions in (0,1], dense_frac + iht_frac <= 1");
            }
        }
        Ok(())
    }
}

/// Per-epoch training statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub mean_loss: f32,
    /// Accuracy on the (augmented) training batches as seen during the epoch.
    pub train_accuracy: f32,
    /// Phase: "dense", "iht" or "fixed-support".
    pub phase: &'static str,
}

/// What training produced besides the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainReport {
    pub epochs: Vec<EpochStats>,
    /// Fraction of non-zero entries of the recurrent matrices at the end.
    pub density_w: f32,
    pub density_u: f32,
}

/// Training inputs.
#[derive(Clone, Copy, Debug)]
pub enum TrainInputs<'a> {
    Texts(&'a [&'a str]),
    Features(&'a [Vec<f32>]),
}

impl<'a> TrainInputs<'a> {
    fn len(&self) -> usize {
        match self {
            TrainInputs::Texts(t) => t.len(),
            TrainInputs::Features(f) => f.len(),
        }
    }
}

impl Classifier {
    /// Randomly initialised classifier (EdgeML-style: `b_z = b_h = 1`, `ζ̂ = 1`, `ν̂ = −4`).
    pub fn init(cfg: ModelConfig, labels: Vec<String>, seed: u64) -> Result<Self, RouterError> {
        cfg.validate().map_err(RouterError::InvalidConfig)?;
        if labels.len() != cfg.n_classes {
            return Err(RouterError::InvalidConfig(format!(
                "{} labels for {} classes",
                labels.len(),
                cfg.n_classes
            )));
        }
        let mut rng = Rng::new(seed);
        let mut p = Params::<f32>::zeros(&cfg);
        let d = cfg.input_dim() as f32;
        let h = cfg.hidden as f32;
        let mut fill = |v: &mut Vec<f32>, std: f32| {
            for x in v.iter_mut() {
                *x = rng.normal() * std;
            }
        };
        fill(&mut p.emb, 0.5);
        fill(&mut p.w, 1.0 / d.sqrt());
        if let Some(r) = cfg.w_rank {
            fill(&mut p.w1, 1.0 / (r as f32).sqrt());
            fill(&mut p.w2, 1.0 / d.sqrt());
        }
        fill(&mut p.u, 0.5 / h.sqrt());
        if let Some(r) = cfg.u_rank {
            fill(&mut p.u1, 0.7 / (r as f32).sqrt());
            fill(&mut p.u2, 0.7 / h.sqrt());
        }
        fill(&mut p.head_w, 1.0 / h.sqrt());
        p.b_z.iter_mut().for_each(|v| *v = 1.0);
        p.b_h.iter_mut().for_each(|v| *v = 1.0);
        p.zeta_hat[0] = 1.0;
        p.nu_hat[0] = -4.0;
        Ok(Classifier {
            cfg,
            params: p,
            labels,
        })
    }

    /// A tokenizer for text models.
    pub fn tokenizer(&self) -> Option<Tokenizer> {
        match self.cfg.input {
            InputKind::Text { tokenizer, .. } => Some(Tokenizer::new(tokenizer)),
            InputKind::Features { .. } => None,
        }
    }

    /// Class probabilities for one input.
    pub fn predict(&self, input: SeqInput<'_>) -> Result<Vec<f32>, RouterError> {
        let mut c = Cache::default();
        embed_input(&self.cfg, &self.params, input, &mut c.xs).map_err(|m| {
            if m.contains("no words") {
                RouterError::EmptyQuery
            } else {
                RouterError::InvalidInput(m)
            }
        })?;
        forward(&self.cfg, &self.params, &mut c);
        Ok(c.probs)
    }

    /// Class probabilities for a text query.
    pub fn predict_text(&self, text: &str) -> Result<Vec<f32>, RouterError> {
        let tk = self
            .tokenizer()
            .ok_or_else(|| RouterError::InvalidInput("this model reads embeddings".into()))?;
        let tok = tk.tokenize(text);
        self.predict(SeqInput::Tokens(&tok))
    }

    /// Class probabilities for a feature vector.
    pub fn predict_features(&self, f: &[f32]) -> Result<Vec<f32>, RouterError> {
        self.predict(SeqInput::Features(f))
    }
}

/// Arg-max of a probability vector.
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Apply one random character edit (delete, swap, replace, insert) to `w`.
fn typo(w: &str, rng: &mut Rng) -> String {
    let mut cs: Vec<char> = w.chars().collect();
    let n = cs.len();
    let letter = |rng: &mut Rng| (b'a' + rng.below(26) as u8) as char;
    match rng.below(4) {
        0 => {
            cs.remove(rng.below(n));
        }
        1 => {
            let i = rng.below(n - 1);
            cs.swap(i, i + 1);
        }
        2 => {
            let i = rng.below(n);
            cs[i] = letter(rng);
        }
        _ => {
            let i = rng.below(n + 1);
            cs.insert(i, letter(rng));
        }
    }
    cs.into_iter().collect()
}

/// Augmented token sequence for one training text.
fn augment(ws: &[String], cfg: &TrainConfig, tk: &Tokenizer, rng: &mut Rng, out: &mut Tokens) {
    let mut kept: Vec<String> = Vec::with_capacity(ws.len());
    for w in ws {
        if ws.len() > 1 && rng.chance(cfg.word_dropout as f64) {
            continue;
        }
        if w.chars().count() >= 4 && rng.chance(cfg.typo_prob as f64) {
            kept.push(typo(w, rng));
        } else {
            kept.push(w.clone());
        }
    }
    if kept.is_empty() {
        kept.push(ws[rng.below(ws.len())].clone());
    }
    if cfg.word_swap > 0.0 {
        // Word-order noise: swap neighbours (a word moves at most one place per pass).
        let mut i = 0;
        while i + 1 < kept.len() {
            if rng.chance(cfg.word_swap as f64) {
                kept.swap(i, i + 1);
                i += 1;
            }
            i += 1;
        }
    }
    tk.tokenize_words(&kept, out);
}

/// Indices of the recurrent tensors subject to hard thresholding.
const SPARSE_W: [usize; 3] = [1, 2, 3];
const SPARSE_U: [usize; 3] = [4, 5, 6];

/// Zero all but the `keep` fraction of largest-magnitude entries; returns the support.
fn hard_threshold(v: &mut [f32], keep: f32) -> Vec<bool> {
    let n = v.len();
    let k = ((n as f32 * keep).ceil() as usize).min(n);
    if k >= n {
        return vec![true; n];
    }
    let mut mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    let thr = mags[k.saturating_sub(1)];
    let mut kept = 0usize;
    let mut mask = vec![false; n];
    for (x, m) in v.iter_mut().zip(mask.iter_mut()) {
        if x.abs() >= thr && kept < k {
            *m = true;
            kept += 1;
        } else {
            *x = 0.0;
        }
    }
    mask
}

/// The learning rate of optimizer step `step` out of `total_steps`: linear from
/// `cfg.lr` at step 0 towards `cfg.lr · cfg.lr_final_frac` at `total_steps` (the last
/// step taken, `total_steps − 1`, is one step short of it).
fn learning_rate(cfg: &TrainConfig, step: usize, total_steps: usize) -> f32 {
    cfg.lr * (1.0 - (1.0 - cfg.lr_final_frac) * step as f32 / total_steps.max(1) as f32)
}

fn density(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 1.0;
    }
    v.iter().filter(|x| **x != 0.0).count() as f32 / v.len() as f32
}

/// Train a classifier on texts (one label per text) — the generic entry point
/// (any number of classes, e.g. routes or attention strategies).
pub fn train_text(
    model: ModelConfig,
    labels_names: Vec<String>,
    texts: &[&str],
    labels: &[usize],
    cfg: &TrainConfig,
    seed: u64,
) -> Result<(Classifier, TrainReport), RouterError> {
    train(
        model,
        labels_names,
        TrainInputs::Texts(texts),
        labels,
        cfg,
        seed,
        &mut |_| {},
    )
}

/// Train a classifier on dense feature vectors (e.g. sentence embeddings).
pub fn train_features(
    model: ModelConfig,
    labels_names: Vec<String>,
    feats: &[Vec<f32>],
    labels: &[usize],
    cfg: &TrainConfig,
    seed: u64,
) -> Result<(Classifier, TrainReport), RouterError> {
    train(
        model,
        labels_names,
        TrainInputs::Features(feats),
        labels,
        cfg,
        seed,
        &mut |_| {},
    )
}

/// Full training loop; `on_epoch` observes progress.
pub fn train(
    model: ModelConfig,
    labels_names: Vec<String>,
    inputs: TrainInputs<'_>,
    labels: &[usize],
    cfg: &TrainConfig,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<(Classifier, TrainReport), RouterError> {
    cfg.validate()?;
    let mut clf = Classifier::init(model, labels_names, seed)?;
    let n = inputs.len();
    if n == 0 || labels.len() != n {
        return Err(RouterError::InvalidData(format!(
            "{} inputs but {} labels (need the same, > 0)",
            n,
            labels.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y >= model.n_classes) {
        return Err(RouterError::InvalidData(format!(
            "label {bad} >= n_classes {}",
            model.n_classes
        )));
    }
    let tk = clf.tokenizer();
    let word_lists: Vec<Vec<String>> = match inputs {
        TrainInputs::Texts(ts) => {
            if tk.is_none() {
                return Err(RouterError::InvalidData(
                    "texts given to a feature model".into(),
                ));
            }
            let wl: Vec<Vec<String>> = ts.iter().map(|t| words(t)).collect();
            if let Some(i) = wl.iter().position(|w| w.is_empty()) {
                return Err(RouterError::InvalidData(format!(
                    "text {i} ({:?}) has no words",
                    ts[i]
                )));
            }
            wl
        }
        TrainInputs::Features(fs) => {
            let InputKind::Features {
                steps, step_dim, ..
            } = model.input
            else {
                return Err(RouterError::InvalidData(
                    "features given to a text model".into(),
                ));
            };
            for (i, f) in fs.iter().enumerate() {
                if f.len() != steps * step_dim || f.iter().any(|v| !v.is_finite()) {
                    return Err(RouterError::InvalidData(format!(
                        "feature vector {i}: need {} finite values",
                        steps * step_dim
                    )));
                }
            }
            Vec::new()
        }
    };

    let mut rng = Rng::new(seed ^ 0x5eed_f00d);
    let mut adams: Vec<Adam> = clf
        .params
        .tensors()
        .iter()
        .map(|t| Adam::new(t.len()))
        .collect();
    let mut grads = Params::<f32>::zeros(&model);
    let mut masks: Vec<Option<Vec<bool>>> = vec![None; N_TENSORS];
    let mut order: Vec<usize> = (0..n).collect();
    let mut cache = Cache::<f32>::default();
    let mut dxs = Vec::new();
    let mut tok = Tokens::default();
    let total_steps = cfg.epochs * n.div_ceil(cfg.batch_size);
    let mut ema: Option<Params<f32>> = cfg.ema_decay.map(|_| clf.params.clone());
    let mut step = 0usize;
    let mut report = TrainReport::default();
    for epoch in 0..cfg.epochs {
        let frac = epoch as f32 / cfg.epochs as f32;
        let phase = match cfg.sparsity {
            None => "dense",
            Some(s) if frac < s.dense_frac => "dense",
            Some(s) if frac < s.dense_frac + s.iht_frac => "iht",
            Some(_) => "fixed-support",
        };
        if phase == "fixed-support" && masks[SPARSE_W[0]].is_none() {
            // Freeze the support found by the last thresholding step.
            let s = cfg.sparsity.expect("phase implies sparsity");
            let ts = clf.params.tensors_mut();
            for &k in &SPARSE_W {
                masks[k] = Some(hard_threshold(ts[k], s.keep_w));
            }
            for &k in &SPARSE_U {
                masks[k] = Some(hard_threshold(ts[k], s.keep_u));
            }
        }
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0f64;
        let mut correct = 0usize;
        for batch in order.chunks(cfg.batch_size) {
            grads.fill_zero();
            let scale = 1.0 / batch.len() as f32;
            for &i in batch {
                let input = match inputs {
                    TrainInputs::Texts(_) => {
                        augment(
                            &word_lists[i],
                            cfg,
                            tk.as_ref().expect("text model"),
                            &mut rng,
                            &mut tok,
                        );
                        SeqInput::Tokens(&tok)
                    }
                    TrainInputs::Features(fs) => SeqInput::Features(&fs[i]),
                };
                embed_input(&model, &clf.params, input, &mut cache.xs)
                    .map_err(RouterError::InvalidData)?;
                if cfg.input_noise > 0.0 {
                    for x in cache.xs.iter_mut() {
                        *x += rng.normal() * cfg.input_noise;
                    }
                }
                forward(&model, &clf.params, &mut cache);
                loss_sum += loss(&cache, labels[i]) as f64;
                if argmax(&cache.probs) == labels[i] {
                    correct += 1;
                }
                backward_smoothed(
                    &model,
                    &clf.params,
                    &cache,
                    labels[i],
                    cfg.label_smoothing,
                    scale,
                    &mut grads,
                    &mut dxs,
                );
                backward_embed(&model, input, &dxs, &mut grads);
            }
            // Global norm clipping.
            let norm: f32 = grads
                .tensors()
                .iter()
                .flat_map(|t| t.iter())
                .map(|g| g * g)
                .sum::<f32>()
                .sqrt();
            if norm > cfg.clip_norm {
                let s = cfg.clip_norm / norm;
                for t in grads.tensors_mut() {
                    t.iter_mut().for_each(|g| *g *= s);
                }
            }
            let acfg = AdamConfig {
                lr: learning_rate(cfg, step, total_steps),
                weight_decay: cfg.weight_decay,
                ..AdamConfig::default()
            };
            let gts = grads.tensors();
            for (k, (p, g)) in clf.params.tensors_mut().into_iter().zip(gts).enumerate() {
                if p.is_empty() {
                    continue;
                }
                adams[k].step(&acfg, p, g, masks[k].as_deref());
            }
            if phase == "iht" {
                let s = cfg.sparsity.expect("phase implies sparsity");
                let ts = clf.params.tensors_mut();
                for &k in &SPARSE_W {
                    hard_threshold(ts[k], s.keep_w);
                }
                for &k in &SPARSE_U {
                    hard_threshold(ts[k], s.keep_u);
                }
            }
            if let (Some(e), Some(d)) = (ema.as_mut(), cfg.ema_decay) {
                // Bias-free start: average over the steps taken so far until 1/(1-d).
                let d = d.min(step as f32 / (step as f32 + 1.0));
                for (et, pt) in e.tensors_mut().into_iter().zip(clf.params.tensors()) {
                    for (ev, &pv) in et.iter_mut().zip(pt.iter()) {
                        *ev = d * *ev + (1.0 - d) * pv;
                    }
                }
            }
            step += 1;
        }
        let st = EpochStats {
            epoch,
            mean_loss: (loss_sum / n as f64) as f32,
            train_accuracy: correct as f32 / n as f32,
            phase,
        };
        on_epoch(&st);
        report.epochs.push(st);
    }
    if let Some(mut e) = ema {
        // Keep the sparse support exact: pruned entries stay zero.
        for (k, m) in masks.iter().enumerate() {
            if let Some(m) = m {
                for (v, &keep) in e.tensors_mut()[k].iter_mut().zip(m) {
                    if !keep {
                        *v = 0.0;
                    }
                }
            }
        }
        clf.params = e;
    }
    let p = &clf.params;
    let dens = |ks: [usize; 3]| {
        let ts = p.tensors();
        let (nz, tot) = ks.iter().fold((0.0f32, 0usize), |(nz, tot), &k| {
            (nz + density(ts[k]) * ts[k].len() as f32, tot + ts[k].len())
        });
        if tot == 0 {
            1.0
        } else {
            nz / tot as f32
        }
    };
    report.density_w = dens(SPARSE_W);
    report.density_u = dens(SPARSE_U);
    Ok((clf, report))
}

#[cfg(test)]
mod tests {
    use super::super::fastgrnn::Pool;
    use super::super::tokenizer::TokenizerConfig;
    use super::*;

    fn small_text_cfg(n_classes: usize) -> ModelConfig {
        ModelConfig {
            input: InputKind::Text {
                tokenizer: TokenizerConfig {
                    n_buckets: 512,
                    ..Default::default()
                },
                emb_dim: 8,
            },
            hidden: 12,
            n_classes,
            w_rank: None,
            u_rank: None,
            pool: Pool::Last,
        }
    }

    #[test]
    fn learning_rate_falls_linearly_to_the_final_fraction() {
        let cfg = TrainConfig {
            lr: 0.02,
            lr_final_frac: 0.05,
            ..TrainConfig::default()
        };
        // 0.02 at the start, 0.001 (= 0.02 · 0.05) at the end, on a straight line:
        // a quarter of the way down, 0.02 − 0.25 · 0.019.
        let want = [
            (0, 0.02),
            (25, 0.01525),
            (50, 0.0105),
            (99, 0.00119),
            (100, 0.001),
        ];
        for (step, lr) in want {
            let got = learning_rate(&cfg, step, 100);
            assert!((got - lr).abs() < 1e-7, "step {step}: {got} vs {lr}");
        }
        // lr_final_frac 1: constant.
        let flat = TrainConfig {
            lr_final_frac: 1.0,
            ..cfg
        };
        assert_eq!(learning_rate(&flat, 73, 100), 0.02);
    }

    fn toy_data() -> (Vec<String>, Vec<usize>) {
        let titles = [
            "heat",
            "alien",
            "fargo",
            "casino",
            "babe",
            "ronin",
            "clerks",
            "tombstone",
            "braveheart",
            "twister",
            "jumanji",
            "sabrina",
        ];
        let mut t = Vec::new();
        let mut y = Vec::new();
        for (i, title) in titles.iter().enumerate() {
            let q = [
                format!("movies like {title}"),
                format!("something similar to {title}"),
                format!("where can i watch {title}"),
                format!("is {title} streaming anywhere"),
                "what's new this week".to_string(),
                format!("latest releases {i}"),
            ];
            for (k, s) in q.into_iter().enumerate() {
                t.push(s);
                y.push(k / 2);
            }
        }
        (t, y)
    }

    #[test]
    fn learns_a_toy_routing_task_and_generalises_to_typos() {
        let (t, y) = toy_data();
        let refs: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        let cfg = TrainConfig {
            epochs: 30,
            batch_size: 8,
            lr: 0.02,
            ..Default::default()
        };
        let names = vec!["similar".into(), "where".into(), "new".into()];
        let (clf, rep) = train_text(small_text_cfg(3), names.clone(), &refs, &y, &cfg, 1).unwrap();
        // The EMA of the iterates is a different, also working, model.
        let ema_cfg = TrainConfig {
            ema_decay: Some(0.95),
            ..cfg
        };
        let (ema, _) = train_text(small_text_cfg(3), names, &refs, &y, &ema_cfg, 1).unwrap();
        assert_ne!(ema.params, clf.params);
        assert_eq!(
            argmax(&ema.predict_text("where can i watch heat").unwrap()),
            1
        );
        assert!(rep.epochs.last().unwrap().mean_loss < rep.epochs[0].mean_loss * 0.3);
        let acc = refs
            .iter()
            .zip(&y)
            .filter(|(q, &l)| argmax(&clf.predict_text(q).unwrap()) == l)
            .count() as f32
            / y.len() as f32;
        assert!(acc > 0.95, "train accuracy {acc}");
        // Unseen titles and a typo.
        for (q, l) in [
            ("movies like godfather", 0),
            ("where can i watch amelie", 1),
            ("whats new this week", 2),
            ("somethin simlar to casablanca", 0),
        ] {
            assert_eq!(argmax(&clf.predict_text(q).unwrap()), l, "{q}");
        }
    }

    #[test]
    fn iht_reaches_target_sparsity_and_keeps_support_fixed() {
        let (t, y) = toy_data();
        let refs: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        let cfg = TrainConfig {
            epochs: 12,
            batch_size: 8,
            lr: 0.02,
            sparsity: Some(SparsityConfig {
                keep_w: 0.3,
                keep_u: 0.25,
                dense_frac: 0.25,
                iht_frac: 0.25,
            }),
            ..Default::default()
        };
        let mut lowrank = small_text_cfg(3);
        lowrank.u_rank = Some(4);
        for m in [small_text_cfg(3), lowrank] {
            let names = vec!["a".into(), "b".into(), "c".into()];
            let (clf, rep) = train_text(m, names, &refs, &y, &cfg, 2).unwrap();
            assert!(rep.density_w <= 0.31, "{}", rep.density_w);
            assert!(rep.density_u <= 0.26, "{}", rep.density_u);
            let phases: Vec<_> = rep.epochs.iter().map(|e| e.phase).collect();
            assert_eq!(phases[0], "dense");
            assert!(phases.contains(&"iht"));
            assert_eq!(*phases.last().unwrap(), "fixed-support");
            assert!(rep.epochs.last().unwrap().train_accuracy > 0.8);
            assert_eq!(clf.params.zeta_hat.len(), 1);
        }
    }

    #[test]
    fn hard_threshold_keeps_largest() {
        let mut v = vec![0.1, -3.0, 0.5, 2.0, -0.2];
        let m = hard_threshold(&mut v, 0.4);
        assert_eq!(v, vec![0.0, -3.0, 0.0, 2.0, 0.0]);
        assert_eq!(m, vec![false, true, false, true, false]);
    }

    #[test]
    fn feature_model_learns_separable_clusters() {
        let cfg_m = ModelConfig {
            input: InputKind::Features {
                steps: 4,
                step_dim: 6,
                input_scale: 1.0,
            },
            hidden: 8,
            n_classes: 3,
            w_rank: Some(4),
            u_rank: None,
            pool: Pool::Last,
        };
        let mut rng = Rng::new(4);
        let centers: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..24).map(|_| rng.normal()).collect())
            .collect();
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..150 {
            let c = i % 3;
            xs.push(centers[c].iter().map(|v| v + rng.normal() * 0.5).collect());
            ys.push(c);
        }
        let cfg = TrainConfig {
            epochs: 15,
            batch_size: 10,
            lr: 0.02,
            ..Default::default()
        };
        let names = vec!["x".into(), "y".into(), "z".into()];
        let (clf, _) = train_features(cfg_m, names, &xs[..120], &ys[..120], &cfg, 3).unwrap();
        let acc = (120..150)
            .filter(|&i| argmax(&clf.predict_features(&xs[i]).unwrap()) == ys[i])
            .count();
        assert!(acc >= 28, "held-out {acc}/30");
    }

    #[test]
    fn ema_is_the_running_mean_of_the_iterates_then_decays_at_the_set_rate() {
        // One step per epoch (the batch is the whole set) and a constant learning
        // rate: a k-epoch run ends on exactly the k-th iterate p_k of a longer run.
        let model = ModelConfig {
            input: InputKind::Features {
                steps: 2,
                step_dim: 3,
                input_scale: 1.0,
            },
            hidden: 4,
            n_classes: 2,
            w_rank: None,
            u_rank: None,
            pool: Pool::Last,
        };
        let mut rng = Rng::new(7);
        let xs: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..6).map(|_| rng.normal()).collect())
            .collect();
        let ys: Vec<usize> = (0..8).map(|i| i % 2).collect();
        let base = TrainConfig {
            epochs: 1,
            batch_size: 8,
            lr: 0.05,
            lr_final_frac: 1.0,
            ..Default::default()
        };
        let run = |epochs: usize, ema_decay: Option<f32>| {
            let cfg = TrainConfig {
                epochs,
                ema_decay,
                ..base
            };
            let names = vec!["a".into(), "b".into()];
            let (clf, _) = train_features(model, names, &xs, &ys, &cfg, 5).unwrap();
            clf.params
        };
        let p: Vec<Params<f32>> = (1..=4).map(|k| run(k, None)).collect();
        assert_ne!(
            p[0], p[1],
            "the iterates must move for this test to mean anything"
        );
        // Decay 0: the average is the last iterate, bit for bit.
        assert_eq!(run(4, Some(0.0)), p[3]);
        // Decay 0.6: step t uses min(0.6, t / (t + 1)) = 0, 1/2, 0.6, 0.6, so
        // e1 = p1, e2 = (p1 + p2) / 2, e3 = 0.6 e2 + 0.4 p3, e4 = 0.6 e3 + 0.4 p4
        //    = 0.18 p1 + 0.18 p2 + 0.24 p3 + 0.4 p4.
        let e = run(4, Some(0.6));
        let w = [0.18f32, 0.18, 0.24, 0.4];
        let pt: Vec<_> = p.iter().map(|q| q.tensors()).collect();
        let mut checked = 0;
        for (k, et) in e.tensors().into_iter().enumerate() {
            for (i, &got) in et.iter().enumerate() {
                let want: f32 = (0..4).map(|j| w[j] * pt[j][k][i]).sum();
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "tensor {k}[{i}]: {got} vs {want}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 40, "{checked} parameters");
    }

    #[test]
    fn bad_training_input_is_rejected() {
        let names = vec!["a".into(), "b".into()];
        let cfg = TrainConfig::default();
        let m = small_text_cfg(2);
        assert!(train_text(m, names.clone(), &["x"], &[2], &cfg, 0).is_err());
        assert!(train_text(m, names.clone(), &["x", "y"], &[0], &cfg, 0).is_err());
        assert!(train_text(m, names.clone(), &["?!"], &[0], &cfg, 0).is_err());
        let bad = TrainConfig {
            lr: f32::NAN,
            ..cfg
        };
        assert!(train_text(m, names, &["x"], &[0], &bad, 0).is_err());
    }
}
