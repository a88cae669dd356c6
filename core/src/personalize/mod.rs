//! On-device personalization: a two-tier LoRA adapter on the query → item
//! projection, learned from viewer interactions with pairwise BPR and EWC++.
//!
//! ```text
//! W' q = W q + (α/r) B_g A_g q + (α/r) B_u A_u q        score(q, item) = ⟨W' q, e_item⟩
//!        base   global tier (server, frozen here)  per-viewer tier (learned here)
//! ```
//!
//! - [`lora`]: the algebra (never forms a d × d matrix), the BPR loss and its exact gradients.
//! - [`ewc`]: EWC++ (online diagonal Fisher, penalty, gradient) in the adapter's layout.
//! - [`signals`]: interaction types, contexts and signal strengths.
//! - [`adapter`]: the per-viewer service: buffering, the adaptation decision,
//!   learning steps, stats, federated export, global-tier updates.
//! - [`format`]: compact versioned binary formats (adapter, global tier, update).
//! - [`config`]: every constant, in [`PersonalizeConfig`].

pub mod adapter;
pub mod config;
pub mod ewc;
pub mod format;
pub mod lora;
pub mod signals;

pub use adapter::{
    adapt_embeddings, load_adapter, Adapter, AdapterStats, Decision, Observation, UpdateOutcome,
};
pub use config::{Dtype, EwcAnchor, FisherScale, FisherStorage, PersonalizeConfig};
pub use format::AdapterUpdate;
pub use lora::{BaseProjection, GlobalAdapter};
pub use signals::{Device, InteractionContext, InteractionKind, SignalType, ViewerInteraction};

use thiserror::Error;

use crate::codec::CodecError;

/// Everything that can go wrong in personalization. Every rejecting call
/// leaves the adapter exactly as it was.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PersonalizeError {
    #[error("{what}: expected {expected} values, got {found}")]
    DimensionMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{what}: value at index {index} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },
    #[error("{what}: length {len} is not a multiple of the embedding dimension {d}")]
    RaggedPool {
        what: &'static str,
        len: usize,
        d: usize,
    },
    #[error("rating {value} is out of range (expected 1..=5 stars)")]
    RatingOutOfRange { value: f32 },
    #[error("{what} = {value} is out of range (expected {range})")]
    OutOfRange {
        what: &'static str,
        value: f64,
        range: &'static str,
    },
    #[error("unknown interaction type {found:?} (expected one of search_click, watch_start, watch_complete, rating, skip)")]
    UnknownInteractionType { found: String },
    #[error("unknown device {found:?} (expected tv, mobile, tablet, desktop, web or other)")]
    UnknownDevice { found: String },
    #[error("a rating interaction needs a star value")]
    MissingRating,
    #[error("{kind} takes no star value")]
    UnexpectedRating { kind: SignalType },
    #[error("content id is {len} bytes (at most {max})")]
    ContentIdTooLong { len: usize, max: usize },
    #[error("invalid config field {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("{what} does not match this configuration: stored {stored}, expected {expected}")]
    Mismatch {
        what: &'static str,
        stored: String,
        expected: String,
    },
    #[error("global adapter version {offered} is not newer than the current version {current}")]
    StaleGlobal { current: u64, offered: u64 },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{what}: {msg}")]
    Corrupt { what: &'static str, msg: String },
}

pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), PersonalizeError> {
    if expected == found {
        Ok(())
    } else {
        Err(PersonalizeError::DimensionMismatch {
            what,
            expected,
            found,
        })
    }
}

pub(crate) fn check_finite(what: &'static str, v: &[f32]) -> Result<(), PersonalizeError> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(PersonalizeError::NonFinite {
            what,
            index,
            value: v[index],
        }),
    }
}

/// Length and finiteness of one embedding.
pub(crate) fn check_vec(what: &'static str, d: usize, v: &[f32]) -> Result<(), PersonalizeError> {
    check_len(what, d, v.len())?;
    check_finite(what, v)
}

#[cfg(test)]
mod tests;
