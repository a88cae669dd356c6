//! Catalog and interaction data: the types every strategy and the evaluation share.
//!
//! Parsers take file *contents* (`&str`), never paths: the host (CLI, server,
//! browser) reads the bytes. Parse errors name the file and the 1-based line.

use serde::{Deserialize, Serialize};

/// One title of the catalog. `id` is a dense index `0..n_items`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Dense index into `Dataset::items`.
    pub id: u32,
    /// The identifier used by the source files (MovieLens movieId / item id).
    pub source_id: u64,
    /// Title without the trailing "(year)".
    pub title: String,
    pub year: Option<u16>,
    /// ISO date `YYYY-MM-DD` where the source gives one.
    pub release_date: Option<String>,
    pub genres: Vec<String>,
    /// Free-text tags (ml-latest `tags.csv`), deduplicated, lowercase.
    pub tags: Vec<String>,
    /// Streaming platforms the title is on.
    pub platforms: Vec<String>,
}

/// One rating / interaction. `user` and `item` are dense indices.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    /// Explicit rating (MovieLens: 0.5–5).
    pub rating: f32,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A catalog plus its interactions, with dense user and item indices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub items: Vec<Item>,
    /// `user_source_ids[u]` is the source file's id for dense user `u`.
    pub user_source_ids: Vec<u64>,
    pub interactions: Vec<Interaction>,
}
