//! Most-popular baseline: items ranked by how many training interactions they have.
//! Online updates add the new interaction to the global counts.

use super::{top_k, History, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};

#[derive(Clone, Debug)]
pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    pub fn train(ds: &Dataset) -> Result<Self, RecommendError> {
        if ds.interactions.is_empty() {
            return Err(RecommendError::NoInteractions);
        }
        let h = History::from_dataset(ds)?;
        let mut counts = vec![0.0f32; ds.n_items()];
        for u in &h.by_user {
            for &(i, _, _) in u {
                counts[i as usize] += 1.0;
            }
        }
        Ok(Popularity { counts })
    }

    /// Interaction count per item.
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }
}

impl OnlineRecommender for Popularity {
    fn name(&self) -> &str {
        "popularity"
    }

    fn recommend(&self, _user: u32, k: usize, exclude: &[bool], _now: i64) -> Vec<u32> {
        top_k(&self.counts, k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        let n = self.counts.len();
        let c = self
            .counts
            .get_mut(x.item as usize)
            .ok_or(RecommendError::ItemOutOfRange {
                item: x.item,
                n_items: n,
            })?;
        *c += 1.0;
        Ok(())
    }

    fn explain(&self, _user: u32, item: u32, _now: i64) -> Option<Reason> {
        let c = *self.counts.get(item as usize)?;
        Some(Reason::Text(format!("Popular: {c:.0} viewers")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::dataset;

    #[test]
    fn ranks_by_count_and_learns_online() {
        let ds = dataset(3, 4, &[(0, 2), (1, 2), (2, 2), (0, 1), (1, 1), (2, 3)]);
        let mut m = Popularity::train(&ds).unwrap();
        assert_eq!(m.recommend(0, 3, &[], 0), [2, 1, 3]);
        assert_eq!(m.recommend(0, 2, &[false, false, true], 0), [1, 3]);
        for _ in 0..2 {
            m.observe(&Interaction {
                user: 0,
                item: 3,
                rating: 5.0,
                timestamp: 9,
            })
            .unwrap();
        }
        assert_eq!(m.recommend(0, 2, &[], 0), [2, 3]);
        let bad = Interaction {
            user: 0,
            item: 4,
            rating: 5.0,
            timestamp: 9,
        };
        assert!(m.observe(&bad).is_err());
        assert!(Popularity::train(&dataset(1, 2, &[])).is_err());
    }
}
