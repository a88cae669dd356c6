//! Semantic router ("Tiny Dancer"): query → recommendation strategy.

pub mod querygen;
pub mod route;

pub use route::Route;
