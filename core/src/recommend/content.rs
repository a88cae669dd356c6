//! Content-based recommender.
//!
//! Each item becomes a sparse vector built from four blocks, each L2-normalised and
//! scaled by a block weight: genres (TF-IDF), tags (TF-IDF), title tokens (TF-IDF,
//! lowercase alphanumeric words of ≥ 3 characters minus a few stop words) and the
//! release decade (one-hot, with half weight on the neighbouring decades). The
//! whole vector is then L2-normalised.
//!
//! A user's profile is the rating-weighted mean of the vectors of the items they
//! consumed (weight = rating / 5); an item's score is the dot product with the
//! profile (cosine up to a per-user constant). Online updates extend the history.

use std::collections::{BTreeMap, HashMap};

use super::{best_history_item, top_k, History, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction, Item};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContentConfig {
    pub w_genre: f32,
    pub w_tag: f32,
    pub w_title: f32,
    pub w_year: f32,
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            w_genre: 1.0,
            w_tag: 1.0,
            w_title: 0.3,
            w_year: 0.5,
        }
    }
}

const STOP: [&str; 12] = [
    "the", "and", "for", "with", "from", "les", "der", "die", "das", "una", "con", "del",
];

/// Lowercase alphanumeric tokens of at least 3 characters, minus stop words.
pub fn title_tokens(title: &str) -> Vec<String> {
    title
        .split(|c: char| !c.is_alphanumeric())
        .map(|t| t.to_lowercase())
        .filter(|t| t.chars().count() >= 3 && !STOP.contains(&t.as_str()))
        .collect()
}

#[derive(Clone, Debug)]
pub struct ContentBased {
    /// Sparse unit vectors: (feature, weight), sorted by feature.
    vectors: Vec<Vec<(u32, f32)>>,
    n_features: usize,
    hist: History,
}

fn block(
    items: &[Item],
    weight: f32,
    vocab: &mut HashMap<String, u32>,
    prefix: &str,
    feats: impl Fn(&Item) -> Vec<(String, f32)>,
    idf: bool,
    out: &mut [Vec<(u32, f32)>],
) {
    if weight == 0.0 {
        return;
    }
    let per_item: Vec<Vec<(String, f32)>> = items.iter().map(&feats).collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for f in &per_item {
        let mut names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            *df.entry(n).or_default() += 1;
        }
    }
    let n = items.len().max(1) as f32;
    for (i, f) in per_item.iter().enumerate() {
        let mut v: BTreeMap<u32, f32> = BTreeMap::new();
        for (name, w) in f {
            let idf_w = if idf {
                (n / df[name.as_str()] as f32).ln() + 1.0
            } else {
                1.0
            };
            let next = vocab.len() as u32;
            let id = *vocab.entry(format!("{prefix}:{name}")).or_insert(next);
            *v.entry(id).or_default() += w * idf_w;
        }
        let norm = v.values().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            out[i].extend(v.into_iter().map(|(k, x)| (k, weight * x / norm)));
        }
    }
}

impl ContentBased {
    pub fn train(ds: &Dataset, cfg: &ContentConfig) -> Result<Self, RecommendError> {
        let ws = [cfg.w_genre, cfg.w_tag, cfg.w_title, cfg.w_year];
        if ws.iter().any(|w| !w.is_finite() || *w < 0.0) || ws.iter().all(|w| *w == 0.0) {
            return Err(RecommendError::InvalidConfig(format!(
                "content weights {cfg:?}"
            )));
        }
        let hist = History::from_dataset(ds)?;
        let items = &ds.items;
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut vectors: Vec<Vec<(u32, f32)>> = vec![Vec::new(); items.len()];
        let ones = |v: &[String]| {
            v.iter()
                .map(|g| (g.to_lowercase(), 1.0))
                .collect::<Vec<_>>()
        };
        block(
            items,
            cfg.w_genre,
            &mut vocab,
            "g",
            |it| ones(&it.genres),
            true,
            &mut vectors,
        );
        block(
            items,
            cfg.w_tag,
            &mut vocab,
            "t",
            |it| ones(&it.tags),
            true,
            &mut vectors,
        );
        block(
            items,
            cfg.w_title,
            &mut vocab,
            "w",
            |it| {
                title_tokens(&it.title)
                    .into_iter()
                    .map(|t| (t, 1.0))
                    .collect()
            },
            true,
            &mut vectors,
        );
        block(
            items,
            cfg.w_year,
            &mut vocab,
            "y",
            |it| match it.year {
                Some(y) => {
                    let d = y / 10;
                    vec![
                        (d.to_string(), 1.0),
                        ((d - 1).to_string(), 0.5),
                        ((d + 1).to_string(), 0.5),
                    ]
                }
                None => Vec::new(),
            },
            false,
            &mut vectors,
        );
        for v in &mut vectors {
            let norm = v.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|e| e.1 /= norm);
            }
            v.sort_unstable_by_key(|e| e.0);
        }
        Ok(ContentBased {
            vectors,
            n_features: vocab.len(),
            hist,
        })
    }

    /// Cosine similarity of two items' content vectors.
    pub fn similarity(&self, a: u32, b: u32) -> f32 {
        let (Some(va), Some(vb)) = (self.vectors.get(a as usize), self.vectors.get(b as usize))
        else {
            return 0.0;
        };
        let (mut i, mut j, mut s) = (0, 0, 0.0);
        while i < va.len() && j < vb.len() {
            match va[i].0.cmp(&vb[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    s += va[i].1 * vb[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        s
    }

    /// Rating-weighted mean profile of the user (dense over features).
    pub fn profile(&self, user: u32) -> Vec<f32> {
        let mut p = vec![0.0f32; self.n_features];
        let mut total = 0.0f32;
        if let Some(h) = self.hist.by_user.get(user as usize) {
            for &(i, r, _) in h {
                let w = r / 5.0;
                total += w;
                for &(f, x) in &self.vectors[i as usize] {
                    p[f as usize] += w * x;
                }
            }
        }
        if total > 0.0 {
            p.iter_mut().for_each(|x| *x /= total);
        }
        p
    }

    pub fn scores(&self, user: u32) -> Vec<f32> {
        let p = self.profile(user);
        self.vectors
            .iter()
            .map(|v| v.iter().map(|&(f, x)| p[f as usize] * x).sum())
            .collect()
    }
}

impl OnlineRecommender for ContentBased {
    fn name(&self) -> &str {
        "content"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], _now: i64) -> Vec<u32> {
        top_k(&self.scores(user), k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        self.hist.check(x)?;
        self.hist.push(x);
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, _now: i64) -> Option<Reason> {
        best_history_item(&self.hist, user, |i| self.similarity(i, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::item;

    fn catalog() -> Dataset {
        let mut items = vec![
            item(0, &["Horror"]),
            item(1, &["Horror", "Thriller"]),
            item(2, &["Comedy", "Romance"]),
            item(3, &["Comedy"]),
            item(4, &["Horror"]),
        ];
        items[0].title = "Night of the Living Dead".into();
        items[4].title = "Dawn of the Dead".into();
        items[3].title = "Airplane".into();
        for it in &mut items {
            it.year = Some(1980);
        }
        items[2].year = Some(2025);
        items[3].tags = vec!["spoof".into()];
        Dataset {
            items,
            user_source_ids: vec![1, 2],
            interactions: vec![Interaction {
                user: 0,
                item: 0,
                rating: 5.0,
                timestamp: 1,
            }],
        }
    }

    #[test]
    fn tokens_and_vectors_are_unit_and_similar_by_content() {
        assert_eq!(
            title_tokens("Night of the Living Dead (1968)"),
            ["night", "living", "dead", "1968"]
        );
        let m = ContentBased::train(&catalog(), &ContentConfig::default()).unwrap();
        for i in 0..5 {
            assert!((m.similarity(i, i) - 1.0).abs() < 1e-5);
        }
        // Same genre + shared title word "dead" beats same genre alone, beats nothing shared.
        assert!(m.similarity(0, 4) > m.similarity(0, 1));
        assert!(m.similarity(0, 1) > m.similarity(0, 2));
        assert!(m.similarity(0, 2).abs() < 1e-6);
    }

    fn only(cfg: ContentConfig, items: Vec<Item>) -> ContentBased {
        let ds = Dataset {
            items,
            user_source_ids: vec![1],
            interactions: vec![Interaction {
                user: 0,
                item: 0,
                rating: 5.0,
                timestamp: 1,
            }],
        };
        ContentBased::train(&ds, &cfg).unwrap()
    }

    const NONE: ContentConfig = ContentConfig {
        w_genre: 0.0,
        w_tag: 0.0,
        w_title: 0.0,
        w_year: 0.0,
    };

    #[test]
    fn genres_are_weighted_by_idf() {
        // 4 items: "horror" in 3 (idf ln(4/3) + 1), "thriller" in 1 (idf ln 4 + 1).
        let items = vec![
            item(0, &["Horror", "Thriller"]),
            item(1, &["Horror"]),
            item(2, &["Horror"]),
            item(3, &["Comedy"]),
        ];
        let m = only(
            ContentConfig {
                w_genre: 1.0,
                ..NONE
            },
            items,
        );
        let h = (4f32 / 3.0).ln() + 1.0;
        let t = 4f32.ln() + 1.0;
        // Item 0 = (h, t)/‖·‖, item 1 = (1, 0): cosine h/√(h² + t²) ≈ 0.475 (no IDF: 0.707).
        let want = h / (h * h + t * t).sqrt();
        assert!(
            (m.similarity(0, 1) - want).abs() < 1e-5,
            "{}",
            m.similarity(0, 1)
        );
        assert!((m.similarity(1, 2) - 1.0).abs() < 1e-5);
        assert!(m.similarity(0, 3).abs() < 1e-6);
    }

    #[test]
    fn decades_share_half_weight_with_their_neighbours() {
        // Decade d → {d: 1, d ± 1: 0.5}, norm √1.5.
        let years = [1980u16, 1989, 1995, 2005, 2025];
        let items = years
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                let mut it = item(i as u32, &[]);
                it.year = Some(y);
                it
            })
            .collect();
        let m = only(
            ContentConfig {
                w_year: 1.0,
                ..NONE
            },
            items,
        );
        let near = |a, b, want: f32| {
            let s = m.similarity(a, b);
            assert!((s - want).abs() < 1e-5, "sim({a}, {b}) = {s}, want {want}");
        };
        near(0, 1, 1.0); // same decade
        near(0, 2, (0.5 + 0.5) / 1.5); // adjacent decades
        near(0, 3, 0.25 / 1.5); // two apart: overlap on 199 only
        near(0, 4, 0.0); // four apart
    }

    #[test]
    fn horror_fan_gets_horror_then_learns_comedy() {
        let mut m = ContentBased::train(&catalog(), &ContentConfig::default()).unwrap();
        let ex = [true, false, false, false, false];
        assert_eq!(m.recommend(0, 2, &ex, 0), [4, 1]);
        assert_eq!(m.explain(0, 4, 0), Some(Reason::BecauseYouWatched(0)));
        for _ in 0..3 {
            m.observe(&Interaction {
                user: 0,
                item: 2,
                rating: 5.0,
                timestamp: 2,
            })
            .unwrap();
        }
        let ex = [true, false, true, false, false];
        assert_eq!(m.recommend(0, 1, &ex, 0), [3]);
        // Profile is a weighted mean: ratings weight items (checked exactly below).
        let mut low = ContentBased::train(&catalog(), &ContentConfig::default()).unwrap();
        low.observe(&Interaction {
            user: 1,
            item: 2,
            rating: 1.0,
            timestamp: 2,
        })
        .unwrap();
        low.observe(&Interaction {
            user: 1,
            item: 0,
            rating: 5.0,
            timestamp: 2,
        })
        .unwrap();
        let ex = [true, false, true, false, false];
        assert_eq!(low.recommend(1, 1, &ex, 0), [4]);
        // Weights 1/5 and 5/5: score(j) = (0.2·sim(2, j) + 1·sim(0, j)) / 1.2, so
        // item 2 (orthogonal to item 0) scores 1/6 and item 0 5/6 (equal weights: ½, ½).
        let s = low.scores(1);
        assert!((s[2] - 1.0 / 6.0).abs() < 1e-5, "{s:?}");
        assert!((s[0] - 5.0 / 6.0).abs() < 1e-5, "{s:?}");
        for j in 0..5u32 {
            let want = (0.2 * low.similarity(2, j) + low.similarity(0, j)) / 1.2;
            assert!((s[j as usize] - want).abs() < 1e-5, "item {j}: {s:?}");
        }
        assert!(ContentBased::train(
            &catalog(),
            &ContentConfig {
                w_genre: -1.0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(m
            .observe(&Interaction {
                user: 0,
                item: 9,
                rating: 5.0,
                timestamp: 2
            })
            .is_err());
    }
}
