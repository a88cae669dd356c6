//! Semantic router ("Tiny Dancer"): query → recommendation strategy.

pub mod classifier;
pub mod error;
pub mod fastgrnn;
pub mod route;
pub mod tokenizer;

pub use classifier::{train_features, train_text, Classifier, SparsityConfig, TrainConfig};
pub use error::RouterError;
pub use route::Route;
