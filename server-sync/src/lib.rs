//! `sona-sync`: the SONA sync server. Devices upload federated adapter updates
//! (`SNAU` bytes from `sona_core::personalize`), the server aggregates them
//! with `sona_core::federated` and publishes the global tier; per-user adapters
//! are stored and served. Handlers translate and delegate: no algorithm lives here.

pub mod auth;
pub mod bank;
pub mod bench;
pub mod client;
pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod server;
pub mod store;
pub mod sync;
