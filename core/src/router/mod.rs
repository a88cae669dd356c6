//! Semantic router ("Tiny Dancer"): query → recommendation strategy.

pub mod fastgrnn;
pub mod route;
pub mod tokenizer;

pub use route::Route;
