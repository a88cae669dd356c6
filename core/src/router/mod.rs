//! Semantic router ("Tiny Dancer"): query → recommendation strategy.
//!
//! Pipeline: [`tokenizer`] (NFKC, lower-case words, hashed char n-grams) →
//! learned embedding table → [`fastgrnn`] recurrence over words → softmax over
//! the six [`Route`]s. Training ([`classifier`]) is BPTT + Adam with optional
//! low-rank factors and iterative hard thresholding; [`quant`] runs the model
//! with int8 weights; [`format`] is the model file; [`registry`] holds the
//! per-route handler/latency/cost/threshold table; [`engine::Router`] turns
//! probabilities into [`RouteDecision`]s with threshold fallback.

pub mod classifier;
pub mod engine;
pub mod error;
pub mod fastgrnn;
pub mod format;
pub mod quant;
pub mod querygen;
pub mod registry;
pub mod route;
pub mod select_model;
#[cfg(test)]
mod shipped;
pub mod tokenizer;

pub use classifier::{
    argmax, train, train_features, train_text, Classifier, EpochStats, SparsityConfig, TrainConfig,
    TrainInputs, TrainReport,
};
pub use engine::{RouteDecision, Router};
pub use error::RouterError;
pub use fastgrnn::{InputKind, ModelConfig, Pool, SeqInput};
pub use format::Model;
pub use quant::QuantClassifier;
pub use registry::{RouteRegistry, RouteSpec};
pub use route::Route;
pub use select_model::{select_model, ModelChoice, ModelTable, SelectModelError};
pub use tokenizer::{Tokenizer, TokenizerConfig, Tokens};
