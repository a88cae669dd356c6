//! # sona-core
//!
//! The portable intelligence layer of the SONA TV-discovery engine. Plain Rust that
//! builds for native targets and `wasm32-unknown-unknown`: no async runtime, no
//! browser bindings, no GPU crates, no file system or clock calls. Hosts inject
//! bytes and time; this crate holds the algorithms.
//!
//! Modules, one concept each:
//! - [`attention`]: 14 attention mechanisms behind one batched interface, Poincaré-ball ops, and the attention selector.
//! - [`router`]: tokenizer, FastGRNN, training, quantization, route registry, model selection.
//! - [`bank`]: ReasoningBank — pattern memory of what worked (exact scan / own HNSW), learning loop, maintenance, persistence.
//! - [`personalize`]: two-tier LoRA adapter, EWC++, interaction signals (on-device learning).
//! - [`federated`]: robust Fisher-weighted aggregation of adapter updates under EWC++, truncated-SVD re-factorization, optional DP.
//! - [`rng`], [`optim`], [`codec`], [`msgpack`]: deterministic randomness, Adam, checksummed envelopes, the MessagePack writer/reader of the sealed formats.

pub mod attention;
pub mod bank;
pub mod codec;
pub mod data;
pub mod eval;
pub mod federated;
pub mod msgpack;
pub mod optim;
pub mod personalize;
pub mod recommend;
pub mod rng;
pub mod router;
