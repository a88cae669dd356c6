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

    /// The same data with the items' dense indices shuffled by `seed` (each
    /// item keeps its title, metadata and ratings; only its index changes).
    /// Code that breaks ties by item index, such as the order the replay gives
    /// ratings made in the same second, then meets another arbitrary order: an
    /// evaluation run on a few shuffles shows how much a figure owes to one.
    pub fn with_items_shuffled(&self, seed: u64) -> Dataset {
        let n = self.n_items();
        let mut order: Vec<usize> = (0..n).collect();
        crate::rng::Rng::new(seed).shuffle(&mut order);
        // order[new] = old
        let mut new_of = vec![0u32; n];
        for (new, &old) in order.iter().enumerate() {
            new_of[old] = new as u32;
        }
        let items = order
            .iter()
            .enumerate()
            .map(|(new, &old)| Item {
                id: new as u32,
                ..self.items[old].clone()
            })
            .collect();
        let interactions = self
            .interactions
            .iter()
            .map(|x| Interaction {
                item: new_of.get(x.item as usize).copied().unwrap_or(x.item),
                ..*x
            })
            .collect();
        Dataset {
            items,
            user_source_ids: self.user_source_ids.clone(),
            interactions,
        }
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
    fn shuffled_items_keep_their_titles_and_ratings() {
        let items: Vec<Item> = (0..50u32)
            .map(|i| Item {
                id: i,
                source_id: 1000 + i as u64,
                title: format!("T{i}"),
                year: None,
                release_date: None,
                genres: vec![format!("g{}", i % 3)],
                tags: Vec::new(),
                platforms: Vec::new(),
            })
            .collect();
        let interactions: Vec<Interaction> = (0..200u32)
            .map(|k| Interaction {
                user: k % 7,
                item: (k * 13) % 50,
                rating: (k % 5) as f32 + 1.0,
                timestamp: k as i64,
            })
            .collect();
        let ds = Dataset {
            items,
            user_source_ids: (0..7).collect(),
            interactions,
        };
        let sh = ds.with_items_shuffled(9);
        assert_eq!(sh, ds.with_items_shuffled(9));
        // Indices moved (a fixed point everywhere would mean no shuffle at all)...
        assert!(sh
            .items
            .iter()
            .zip(&ds.items)
            .any(|(a, b)| a.title != b.title));
        // ...but every index is dense and every rating still points at its title.
        for (i, it) in sh.items.iter().enumerate() {
            assert_eq!(it.id as usize, i);
        }
        for (a, b) in sh.interactions.iter().zip(&ds.interactions) {
            assert_eq!(
                sh.items[a.item as usize].source_id,
                ds.items[b.item as usize].source_id
            );
            assert_eq!(
                (a.user, a.rating, a.timestamp),
                (b.user, b.rating, b.timestamp)
            );
        }
        let mut ids: Vec<u64> = sh.items.iter().map(|i| i.source_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1000..1050).collect::<Vec<u64>>());
    }

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
