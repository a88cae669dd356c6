//! Catalog and interaction data: the types every strategy and the evaluation share.
//!
//! Parsers take file *contents* (`&str` / `&[u8]`), never paths: the host (CLI, server,
//! browser) reads the bytes. Parse errors name the file and the 1-based line.
//!
//! - [`parse_ml100k`]: MovieLens 100K (`u.data` + latin-1 `u.item`).
//! - [`parse_ml_latest`]: MovieLens latest / 25M layout (`ratings.csv`, `movies.csv`,
//!   optional `tags.csv`).
//!
//! Dense indices: items are numbered in the order the catalog file lists them
//! (`u.item` / `movies.csv`); users are numbered by ascending source id. Both are
//! deterministic functions of the file contents. Interactions keep the order of the
//! ratings file.
//!
//! Titles keep the source spelling (`"Godfather, The"`); [`display_title`] gives the
//! reading form (`"The Godfather"`).
//!
//! **Platforms are synthetic.** MovieLens carries no streaming availability, so each
//! item gets 1–3 platforms from [`SYNTHETIC_PLATFORMS`] chosen by a fixed hash of its
//! source id ([`synthetic_platforms`]). They exist so that availability filtering can
//! be exercised end to end; they say nothing about real availability.

mod csv;
mod movielens;

pub use movielens::{latin1_to_string, parse_ml100k, parse_ml_latest, ML100K_GENRES};

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

impl Item {
    /// The title in reading order ("Godfather, The" → "The Godfather").
    pub fn display_title(&self) -> String {
        display_title(&self.title)
    }
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

impl Dataset {
    pub fn n_users(&self) -> usize {
        self.user_source_ids.len()
    }

    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// Every distinct genre name, sorted.
    pub fn genre_vocabulary(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .items
            .iter()
            .flat_map(|i| i.genres.iter().cloned())
            .collect();
        g.sort();
        g.dedup();
        g
    }
}

/// Errors from the dataset parsers. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("{file}: required file is missing")]
    MissingFile { file: String },
    #[error("{file}:{line}: malformed line: {reason}")]
    Malformed {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}:{line}: item id {item_id} is not in the catalog")]
    UnknownItem {
        file: String,
        line: usize,
        item_id: u64,
    },
    #[error("{file}:{line}: rating {value:?} is not a number in [{min}, {max}]")]
    BadRating {
        file: String,
        line: usize,
        value: String,
        min: f32,
        max: f32,
    },
    #[error("{file}:{line}: item id {item_id} appears twice in the catalog")]
    DuplicateItem {
        file: String,
        line: usize,
        item_id: u64,
    },
    #[error("{file}: contains no records")]
    Empty { file: String },
}

/// The fixed list synthetic platforms are drawn from.
pub const SYNTHETIC_PLATFORMS: [&str; 8] = [
    "Netflix",
    "Hulu",
    "Prime Video",
    "Disney+",
    "Max",
    "Apple TV+",
    "Peacock",
    "Paramount+",
];

/// SYNTHETIC availability: 1–3 distinct platforms chosen by a SplitMix64 hash of the
/// source id. Deterministic and stable across targets; not real data.
pub fn synthetic_platforms(source_id: u64) -> Vec<String> {
    let mut h = source_id ^ 0x005E_ED0F_5014;
    let mut next = || {
        h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let n = 1 + (next() % 3) as usize;
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    while picked.len() < n {
        let p = (next() % SYNTHETIC_PLATFORMS.len() as u64) as usize;
        if !picked.contains(&p) {
            picked.push(p);
        }
    }
    picked.sort_unstable();
    picked
        .into_iter()
        .map(|p| SYNTHETIC_PLATFORMS[p].to_string())
        .collect()
}

/// Trailing articles MovieLens moves to the end of a title ("Godfather, The").
const ARTICLES: [&str; 16] = [
    "The", "A", "An", "Les", "Le", "La", "L'", "Il", "Das", "Der", "Die", "El", "Los", "Las", "Lo",
    "Os",
];

/// Reading form of a MovieLens title: a trailing ", The" (or another article from a
/// fixed list) moves to the front. A parenthesised alternative title after the main
/// one is kept in place: "City of Lost Children, The (Cité des enfants perdus, La)"
/// → "The City of Lost Children (Cité des enfants perdus, La)". Other titles are
/// returned unchanged.
pub fn display_title(title: &str) -> String {
    let (main, rest) = match title.find(" (") {
        Some(p) if title.ends_with(')') => (&title[..p], &title[p..]),
        _ => (title, ""),
    };
    if let Some(p) = main.rfind(", ") {
        let article = &main[p + 2..];
        if ARTICLES.contains(&article) {
            let sep = if article.ends_with('\'') { "" } else { " " };
            return format!("{article}{sep}{}{rest}", &main[..p]);
        }
    }
    title.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_title_moves_trailing_article() {
        assert_eq!(display_title("Godfather, The"), "The Godfather");
        assert_eq!(display_title("Few Good Men, A"), "A Few Good Men");
        assert_eq!(display_title("Toy Story"), "Toy Story");
        assert_eq!(
            display_title("City of Lost Children, The (Cité des enfants perdus, La)"),
            "The City of Lost Children (Cité des enfants perdus, La)"
        );
        // A comma that is not before an article stays.
        assert_eq!(display_title("Crumb, Robert"), "Crumb, Robert");
        assert_eq!(display_title("Enfer, L'"), "L'Enfer");
    }

    #[test]
    fn synthetic_platforms_are_deterministic_distinct_and_varied() {
        let mut seen = std::collections::BTreeSet::new();
        for id in 0..500u64 {
            let a = synthetic_platforms(id);
            assert_eq!(a, synthetic_platforms(id));
            assert!((1..=3).contains(&a.len()));
            let mut d = a.clone();
            d.dedup();
            assert_eq!(d.len(), a.len());
            for p in &a {
                assert!(SYNTHETIC_PLATFORMS.contains(&p.as_str()));
                seen.insert(p.clone());
            }
        }
        assert_eq!(seen.len(), SYNTHETIC_PLATFORMS.len());
    }
}
