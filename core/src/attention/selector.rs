//! The attention selector: query text → distribution over mechanisms → top 3.
//!
//! It reuses the router's pieces unchanged: the hashed n-gram [`Tokenizer`], the FastGRNN
//! [`Classifier`] (here with 12 classes, one per mechanism of
//! [`SELECTOR_MECHANISMS`]), its training entry point [`train_text`] and its model file
//! format ([`Model`]). Multi-intent queries are trained with soft targets
//! ([`super::selector_data::target_distribution`]) realised as repeated rows ([`label_counts`]).
//!
//! [`AttentionSelector::select`] returns the three most probable mechanisms with their
//! probabilities renormalised to sum to 1; [`apply_combined`] runs them through the
//! [`Registry`] and mixes the outputs, `Σ wᵢ · mechanismᵢ(q, k, v)`.
//!
//! Accuracy (as reported by [`evaluate`]): a single-intent query is correct when the top-1
//! mechanism belongs to its intent; a multi-intent query is correct when every intent has at
//! least one of its mechanisms in the top 3.

use super::selector_data::{generate, label_counts, Example, SELECTOR_MECHANISMS};
use super::{AttnError, AttnInput, Registry};
use crate::rng::Rng;
use crate::router::{
    train_text, Classifier, InputKind, Model, ModelConfig, Pool, RouterError, SeqInput, Tokenizer,
    TokenizerConfig, TrainConfig, TrainReport,
};
use thiserror::Error;

/// Why a selector operation failed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SelectorError {
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error(transparent)]
    Attention(#[from] AttnError),
    #[error("model classes {found:?} are not the {} selector mechanisms", SELECTOR_MECHANISMS.len())]
    NotASelector { found: Vec<String> },
    #[error("invalid selection: {0}")]
    BadSelection(String),
}

/// One selected mechanism and its mixing weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Selection {
    pub mechanism: &'static str,
    pub weight: f32,
}

/// A trained selector (f32 FastGRNN).
#[derive(Clone, Debug)]
pub struct AttentionSelector {
    clf: Classifier,
    tokenizer: Tokenizer,
}

impl AttentionSelector {
    /// Wraps a classifier whose classes are exactly [`SELECTOR_MECHANISMS`].
    pub fn from_classifier(clf: Classifier) -> Result<Self, SelectorError> {
        if clf.labels.len() != SELECTOR_MECHANISMS.len()
            || clf
                .labels
                .iter()
                .zip(SELECTOR_MECHANISMS)
                .any(|(a, b)| a != b)
        {
            return Err(SelectorError::NotASelector {
                found: clf.labels.clone(),
            });
        }
        let tokenizer = clf.tokenizer().ok_or_else(|| {
            SelectorError::Router(RouterError::InvalidInput(
                "the selector reads text; this model reads features".into(),
            ))
        })?;
        Ok(AttentionSelector { clf, tokenizer })
    }

    /// Loads a model file written by [`AttentionSelector::to_bytes`]; returns its metadata too.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, String), SelectorError> {
        let (model, meta) = Model::from_bytes(bytes)?;
        match model {
            Model::F32(c) => Ok((Self::from_classifier(c)?, meta)),
            Model::Int8(_) => Err(SelectorError::Router(RouterError::Format(
                "the selector model is stored in f32".into(),
            ))),
        }
    }

    /// The router model file (magic `SRTR`) holding this selector.
    pub fn to_bytes(&self, meta: &str) -> Vec<u8> {
        Model::F32(self.clf.clone()).to_bytes(meta)
    }

    /// The underlying classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.clf
    }

    /// Probabilities over [`SELECTOR_MECHANISMS`].
    pub fn probabilities(&self, text: &str) -> Result<Vec<f32>, SelectorError> {
        let tok = self.tokenizer.tokenize(text);
        Ok(self.clf.predict(SeqInput::Tokens(&tok))?)
    }

    /// The three most probable mechanisms, weights renormalised to sum to 1 (descending).
    pub fn select(&self, text: &str) -> Result<[Selection; 3], SelectorError> {
        let p = self.probabilities(text)?;
        Ok(top3(&p))
    }
}

/// Top three of a probability vector over [`SELECTOR_MECHANISMS`] (length 12), renormalised.
pub(crate) fn top3(p: &[f32]) -> [Selection; 3] {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let z: f32 = idx[..3]
        .iter()
        .map(|&i| p[i])
        .sum::<f32>()
        .max(f32::MIN_POSITIVE);
    let s = |r: usize| Selection {
        mechanism: SELECTOR_MECHANISMS[idx[r]],
        weight: p[idx[r]] / z,
    };
    [s(0), s(1), s(2)]
}

/// `out = Σ wᵢ · mechanismᵢ(inp)` over the selections, each run through `reg`.
/// Weights must be finite and ≥ 0; `out` is untouched on error.
pub fn apply_combined(
    reg: &Registry,
    inp: &AttnInput,
    selections: &[Selection],
    out: &mut [f32],
) -> Result<(), AttnError> {
    inp.validate(out.len())?;
    if selections.is_empty() {
        return Err(AttnError::Invalid {
            what: "selections",
            msg: "at least one mechanism is needed".into(),
        });
    }
    if let Some(s) = selections
        .iter()
        .find(|s| !(s.weight.is_finite() && s.weight >= 0.0))
    {
        return Err(AttnError::Invalid {
            what: "selections",
            msg: format!(
                "weight of {} must be finite and >= 0, got {}",
                s.mechanism, s.weight
            ),
        });
    }
    let mut acc = vec![0.0f32; out.len()];
    let mut tmp = vec![0.0f32; out.len()];
    for s in selections {
        reg.forward(s.mechanism, inp, &mut tmp)?;
        for (a, t) in acc.iter_mut().zip(&tmp) {
            *a += s.weight * t;
        }
    }
    out.copy_from_slice(&acc);
    Ok(())
}

/// Accuracy counts (see the module docs for the definition).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalReport {
    pub n: usize,
    pub correct: usize,
    pub single_n: usize,
    pub single_correct: usize,
    pub multi_n: usize,
    pub multi_correct: usize,
}

impl EvalReport {
    pub fn accuracy(&self) -> f32 {
        self.correct as f32 / self.n.max(1) as f32
    }
}

/// Whether `sel` is correct for `ex` under the accuracy definition.
pub fn is_correct(sel: &[Selection; 3], ex: &Example) -> bool {
    let name_of = |c: usize| SELECTOR_MECHANISMS[c];
    if ex.intents.len() == 1 {
        let m = ex.intents[0].mechanisms();
        m.iter().any(|&c| name_of(c) == sel[0].mechanism)
    } else {
        ex.intents.iter().all(|i| {
            i.mechanisms()
                .iter()
                .any(|&c| sel.iter().any(|s| s.mechanism == name_of(c)))
        })
    }
}

/// Scores the selector on labelled examples.
pub fn evaluate(
    sel: &AttentionSelector,
    examples: &[Example],
) -> Result<EvalReport, SelectorError> {
    let mut r = EvalReport::default();
    for ex in examples {
        let ok = is_correct(&sel.select(&ex.text)?, ex);
        r.n += 1;
        r.correct += ok as usize;
        if ex.intents.len() == 1 {
            r.single_n += 1;
            r.single_correct += ok as usize;
        } else {
            r.multi_n += 1;
            r.multi_correct += ok as usize;
        }
    }
    Ok(r)
}

/// How to build the training set and the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectorTrainConfig {
    /// Single-intent queries generated per intent (before de-duplication).
    pub per_intent: usize,
    /// Two-intent queries generated per intent pair.
    pub per_pair: usize,
    /// Fraction of the distinct generated texts held out for evaluation.
    pub holdout: f32,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

impl Default for SelectorTrainConfig {
    fn default() -> Self {
        SelectorTrainConfig {
            per_intent: 800,
            per_pair: 150,
            holdout: 0.15,
            model: ModelConfig {
                input: InputKind::Text {
                    tokenizer: TokenizerConfig::default(),
                    emb_dim: 24,
                },
                hidden: 32,
                n_classes: SELECTOR_MECHANISMS.len(),
                w_rank: None,
                u_rank: None,
                pool: Pool::Last,
            },
            train: TrainConfig {
                epochs: 10,
                ..TrainConfig::default()
            },
        }
    }
}

/// What training produced besides the selector.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectorTrainReport {
    pub train_texts: usize,
    pub train_rows: usize,
    pub heldout: EvalReport,
    pub router: TrainReport,
}

/// Generates the data (distinct texts, split into train and held-out), trains the FastGRNN
/// with the router's [`train_text`], and scores the held-out split. Reproducible from `seed`.
pub fn train_selector(
    cfg: &SelectorTrainConfig,
    seed: u64,
) -> Result<(AttentionSelector, SelectorTrainReport), SelectorError> {
    if !(0.0..1.0).contains(&cfg.holdout) {
        return Err(SelectorError::BadSelection(format!(
            "holdout must be in [0, 1), got {}",
            cfg.holdout
        )));
    }
    let mut pool = generate(seed, cfg.per_intent, cfg.per_pair);
    // Distinct texts only, so no held-out string was seen in training.
    let mut seen = std::collections::HashSet::new();
    pool.retain(|e| seen.insert(e.text.to_lowercase()));
    Rng::new(seed ^ 0xa77e).shuffle(&mut pool);
    let n_hold = (pool.len() as f32 * cfg.holdout).round() as usize;
    let (held, train) = pool.split_at(n_hold);
    let mut texts: Vec<&str> = Vec::new();
    let mut labels: Vec<usize> = Vec::new();
    for ex in train {
        for (c, n) in label_counts(&ex.intents) {
            for _ in 0..n {
                texts.push(&ex.text);
                labels.push(c);
            }
        }
    }
    let names = SELECTOR_MECHANISMS.iter().map(|s| s.to_string()).collect();
    let (clf, router) = train_text(cfg.model, names, &texts, &labels, &cfg.train, seed)?;
    let sel = AttentionSelector::from_classifier(clf)?;
    let heldout = evaluate(&sel, held)?;
    Ok((
        sel,
        SelectorTrainReport {
            train_texts: train.len(),
            train_rows: texts.len(),
            heldout,
            router,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::selector_data::{parse_tsv, Intent};
    use crate::attention::testutil::*;
    use crate::attention::RegistryConfig;

    const MODEL: &[u8] = include_bytes!("../../../models/attention-selector.bin");
    const HANDWRITTEN: &str = include_str!("../../../tests/data/attention_handwritten.tsv");

    fn shipped() -> AttentionSelector {
        AttentionSelector::from_bytes(MODEL)
            .expect("models/attention-selector.bin loads")
            .0
    }

    #[test]
    fn worked_example_selects_graph_rope_edge_featured_and_cross() {
        let s = shipped()
            .select("Find sci-fi shows similar to Stranger Things on my platforms")
            .unwrap();
        let mut names: Vec<&str> = s.iter().map(|x| x.mechanism).collect();
        names.sort();
        assert_eq!(names, ["cross", "edge_featured", "graph_rope"], "{s:?}");
        assert!((s.iter().map(|x| x.weight).sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(s[0].weight >= s[1].weight && s[1].weight >= s[2].weight);
    }

    #[test]
    fn shipped_model_meets_95_percent_on_the_handwritten_set() {
        let set = parse_tsv(HANDWRITTEN).unwrap();
        assert!(set.len() >= 60);
        let r = evaluate(&shipped(), &set).unwrap();
        let misses: Vec<String> = set
            .iter()
            .filter(|e| !is_correct(&shipped().select(&e.text).unwrap(), e))
            .map(|e| {
                format!(
                    "{:?} {:?}",
                    e.text,
                    shipped().select(&e.text).unwrap().map(|s| s.mechanism)
                )
            })
            .collect();
        assert!(
            r.accuracy() >= 0.95,
            "accuracy {} ({}/{}); misses: {misses:#?}",
            r.accuracy(),
            r.correct,
            r.n
        );
    }

    #[test]
    fn apply_combined_is_the_weighted_sum_of_mechanisms() {
        let reg = Registry::new(RegistryConfig {
            d: 8,
            d_v: 4,
            d_e: 1,
            seed: 3,
        })
        .unwrap();
        let (q, k, v) = rand_qkv(1, 5, 7, 8, 4);
        let inp = AttnInput::new(&q, &k, &v, 5, 7, 8, 4);
        let sel = [
            Selection {
                mechanism: "flash",
                weight: 0.5,
            },
            Selection {
                mechanism: "linear",
                weight: 0.3,
            },
            Selection {
                mechanism: "moe",
                weight: 0.2,
            },
        ];
        let mut out = vec![0.0; 20];
        apply_combined(&reg, &inp, &sel, &mut out).unwrap();
        let mut want = vec![0.0f32; 20];
        for s in &sel {
            let mut o = vec![0.0; 20];
            reg.forward(s.mechanism, &inp, &mut o).unwrap();
            want.iter_mut()
                .zip(&o)
                .for_each(|(w, x)| *w += s.weight * x);
        }
        assert_close(&out, &want, 1e-6);
        // A mechanism that needs a missing extra fails cleanly and leaves `out` alone.
        let before = out.clone();
        let bad = [Selection {
            mechanism: "graph_rope",
            weight: 1.0,
        }];
        assert!(matches!(
            apply_combined(&reg, &inp, &bad, &mut out),
            Err(AttnError::MissingExtra { .. })
        ));
        let nan = [Selection {
            mechanism: "flash",
            weight: f32::NAN,
        }];
        assert!(apply_combined(&reg, &inp, &nan, &mut out).is_err());
        assert_eq!(out, before);
    }

    #[test]
    fn worked_example_end_to_end_on_a_small_catalog_graph() {
        // Select for the worked example, then mix the three mechanisms on a 6-item graph
        // with hop positions and edge features.
        use crate::attention::{EdgeFeats, Extras, Positions};
        let sel = shipped()
            .select("Find sci-fi shows similar to Stranger Things on my platforms")
            .unwrap();
        let reg = Registry::new(RegistryConfig {
            d: 8,
            d_v: 4,
            d_e: 2,
            seed: 9,
        })
        .unwrap();
        let (q, k, v) = rand_qkv(5, 6, 6, 8, 4);
        let pos = [0.0f32, 1.0, 1.0, 2.0, 2.0, 3.0];
        let mut rng = Rng::new(2);
        let ef = rand_vec(&mut rng, 6 * 6 * 2, 1.0);
        let ex = Extras {
            positions: Some(Positions { q: &pos, k: &pos }),
            edge_feats: Some(EdgeFeats { data: &ef, d_e: 2 }),
            ..Default::default()
        };
        let inp = AttnInput::new(&q, &k, &v, 6, 6, 8, 4).with_extras(ex);
        let mut out = vec![0.0; 24];
        apply_combined(&reg, &inp, &sel, &mut out).unwrap();
        let mut want = vec![0.0f32; 24];
        for s in &sel {
            let mut o = vec![0.0; 24];
            reg.forward(s.mechanism, &inp, &mut o).unwrap();
            want.iter_mut()
                .zip(&o)
                .for_each(|(w, x)| *w += s.weight * x);
        }
        assert_close(&out, &want, 1e-6);
    }

    #[test]
    fn top3_renormalises_and_orders() {
        let mut p = vec![0.01f32; 12];
        p[4] = 0.5;
        p[0] = 0.3;
        p[1] = 0.1;
        let s = top3(&p);
        assert_eq!(
            [s[0].mechanism, s[1].mechanism, s[2].mechanism],
            ["cross", "graph_rope", "edge_featured"]
        );
        assert!((s[0].weight - 0.5 / 0.9).abs() < 1e-6);
    }

    #[test]
    fn training_learns_from_scratch_on_a_small_set() {
        // Learning test: a tiny model trained for a few seconds separates the intents far above
        // chance (1/6 for top-1 among intents) on held-out queries.
        let mut cfg = SelectorTrainConfig {
            per_intent: 60,
            per_pair: 8,
            ..Default::default()
        };
        cfg.model.hidden = 16;
        cfg.model.input = InputKind::Text {
            tokenizer: TokenizerConfig {
                n_buckets: 512,
                ..Default::default()
            },
            emb_dim: 12,
        };
        cfg.train.epochs = 6;
        let (sel, rep) = train_selector(&cfg, 5).unwrap();
        assert!(rep.heldout.n > 30);
        assert!(rep.heldout.accuracy() > 0.6, "{:?}", rep.heldout);
        let s = sel.select("surprise me with a random mix").unwrap();
        assert!(["moe", "multi_head"].contains(&s[0].mechanism), "{s:?}");
        let _ = Intent::Mixed;
    }

    #[test]
    fn empty_query_is_an_error() {
        let e = shipped().select("  ?! ").unwrap_err();
        assert_eq!(e, SelectorError::Router(RouterError::EmptyQuery));
    }

    #[test]
    fn wrong_model_files_are_rejected() {
        assert!(AttentionSelector::from_bytes(&MODEL[..MODEL.len() - 3]).is_err());
        let mut cfg = SelectorTrainConfig::default().model;
        cfg.n_classes = 2;
        let clf = Classifier::init(cfg, vec!["a".into(), "b".into()], 1).unwrap();
        assert!(matches!(
            AttentionSelector::from_classifier(clf),
            Err(SelectorError::NotASelector { .. })
        ));
    }
}
