//! Errors of the router domain.

use thiserror::Error;

use crate::codec::CodecError;

/// Why a router operation was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RouterError {
    #[error("empty query: it contains no words")]
    EmptyQuery,
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("invalid training data: {0}")]
    InvalidData(String),
    #[error("router model file: {0}")]
    Codec(#[from] CodecError),
    #[error("router model file is malformed: {0}")]
    Format(String),
    #[error("routes registry: {0}")]
    Registry(String),
    #[error("model classes {found:?} do not name the six routes")]
    NotARouteModel { found: Vec<String> },
}
