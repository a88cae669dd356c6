//! Weighted reciprocal rank fusion (Cormack et al. 2009, with weights):
//! `RRF(d) = Σ_i w_i / (k + rank_i(d))`, ranks 1-based, `k = 60`; an item absent
//! from a component's top `depth` contributes nothing for that component.
//!
//! Default weights: collaborative filtering 0.3, content 0.2, graph 0.4, context 0.1.
//! Every result carries per-component contributions and an explanation taken from
//! the component that contributed most and can explain ("Because you watched …").

use std::collections::BTreeMap;

use super::{check_interaction, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};

/// The default weights by component role.
pub const DEFAULT_WEIGHTS: [(&str, f32); 4] = [
    ("cf", 0.3),
    ("content", 0.2),
    ("graph", 0.4),
    ("context", 0.1),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusionConfig {
    /// The `k` of RRF (60 in the original paper).
    pub k: f32,
    /// How deep each component's list is read.
    pub depth: usize,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            k: 60.0,
            depth: 100,
        }
    }
}

/// One fused component: a role name, its weight, and the model.
pub struct Component {
    pub role: String,
    pub weight: f32,
    pub model: Box<dyn OnlineRecommender>,
}

/// One component's RRF term for a 1-based `rank`: `weight / (rrf_k + rank)`.
#[inline]
pub fn rrf_term(weight: f32, rrf_k: f32, rank: usize) -> f32 {
    weight / (rrf_k + rank as f32)
}

/// Plain weighted RRF over ranked lists: `(item, score)` best first, ties to the
/// lower item id, at most `k` entries. `lists[c]` is component c's ranking and
/// `weights[c]` its weight.
pub fn rrf(lists: &[&[u32]], weights: &[f32], rrf_k: f32, k: usize) -> Vec<(u32, f32)> {
    let mut fused: BTreeMap<u32, f32> = BTreeMap::new();
    for (list, &w) in lists.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        for (r, &item) in list.iter().enumerate() {
            *fused.entry(item).or_insert(0.0) += rrf_term(w, rrf_k, r + 1);
        }
    }
    let mut out: Vec<(u32, f32)> = fused.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// One component's share of a fused score.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub role: String,
    /// 1-based rank in that component's list.
    pub rank: usize,
    /// `w / (k + rank)`.
    pub value: f32,
}

/// A fused result with its provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub item: u32,
    pub score: f32,
    /// Largest contribution first.
    pub contributions: Vec<Contribution>,
    pub explanation: String,
}

pub struct Fusion {
    name: String,
    cfg: FusionConfig,
    components: Vec<Component>,
    titles: Vec<String>,
}

impl Fusion {
    /// `ds` supplies the catalog titles used in explanations.
    pub fn new(
        name: &str,
        ds: &Dataset,
        components: Vec<Component>,
        cfg: FusionConfig,
    ) -> Result<Self, RecommendError> {
        if components.is_empty()
            || !(cfg.k.is_finite() && cfg.k >= 0.0)
            || cfg.depth == 0
            || components
                .iter()
                .any(|c| !(c.weight.is_finite() && c.weight >= 0.0))
        {
            return Err(RecommendError::InvalidConfig(
                "fusion needs ≥ 1 component, finite weights ≥ 0, k ≥ 0, depth ≥ 1".into(),
            ));
        }
        Ok(Fusion {
            name: name.to_string(),
            cfg,
            components,
            titles: ds.items.iter().map(|i| i.display_title()).collect(),
        })
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Fused top-k (item, score, contributions), without explanations.
    pub fn fuse(&self, user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<Recommendation> {
        let depth = self.cfg.depth.max(k);
        // (item, component, rank, value) for every listed item, then grouped by item.
        let mut hits: Vec<(u32, usize, usize, f32)> = Vec::new();
        for (ci, c) in self.components.iter().enumerate() {
            if c.weight == 0.0 {
                continue;
            }
            for (r, item) in c
                .model
                .recommend(user, depth, exclude, now)
                .into_iter()
                .enumerate()
            {
                hits.push((item, ci, r + 1, rrf_term(c.weight, self.cfg.k, r + 1)));
            }
        }
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        // (score, item, start, end) ranges into `hits`.
        let mut groups: Vec<(f32, u32, usize, usize)> = Vec::new();
        let mut start = 0;
        while start < hits.len() {
            let item = hits[start].0;
            let mut end = start;
            let mut score = 0.0f32;
            while end < hits.len() && hits[end].0 == item {
                score += hits[end].3;
                end += 1;
            }
            groups.push((score, item, start, end));
            start = end;
        }
        groups.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        groups.truncate(k);
        groups
            .into_iter()
            .map(|(score, item, s, e)| {
                let mut contributions: Vec<Contribution> = hits[s..e]
                    .iter()
                    .map(|&(_, ci, rank, value)| Contribution {
                        role: self.components[ci].role.clone(),
                        rank,
                        value,
                    })
                    .collect();
                contributions.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.role.cmp(&b.role)));
                Recommendation {
                    item,
                    score,
                    contributions,
                    explanation: String::new(),
                }
            })
            .collect()
    }

    /// Fused top-k with contributions and explanations.
    pub fn recommend_explained(
        &self,
        user: u32,
        k: usize,
        exclude: &[bool],
        now: i64,
    ) -> Vec<Recommendation> {
        let mut ranked = self.fuse(user, k, exclude, now);
        for r in &mut ranked {
            r.explanation = self.explanation(user, r.item, now, &r.contributions);
        }
        ranked
    }

    fn explanation(
        &self,
        user: u32,
        item: u32,
        now: i64,
        contributions: &[Contribution],
    ) -> String {
        for con in contributions {
            let Some(c) = self.components.iter().find(|c| c.role == con.role) else {
                continue;
            };
            match c.model.explain(user, item, now) {
                Some(Reason::BecauseYouWatched(i)) => {
                    if let Some(t) = self.titles.get(i as usize) {
                        return format!("Because you watched {t}");
                    }
                }
                Some(Reason::Text(t)) => return t,
                None => {}
            }
        }
        match contributions.first() {
            Some(c) if c.rank > 0 => format!("Ranked #{} by {}", c.rank, c.role),
            Some(c) => format!("Recommended by {}", c.role),
            None => String::new(),
        }
    }
}

impl OnlineRecommender for Fusion {
    fn name(&self) -> &str {
        &self.name
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<u32> {
        self.fuse(user, k, exclude, now)
            .into_iter()
            .map(|r| r.item)
            .collect()
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        check_interaction(x, self.titles.len())?;
        for c in &mut self.components {
            c.model.observe(x)?;
        }
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, now: i64) -> Option<Reason> {
        if item as usize >= self.titles.len() {
            return None;
        }
        // Contributions from the fused lists when the item is in them (no exclusion
        // mask here, so seen items may push it out); otherwise ask the components
        // in order of weight.
        let r = self.fuse(user, self.cfg.depth, &[], now);
        let contributions = match r.into_iter().find(|r| r.item == item) {
            Some(hit) => hit.contributions,
            None => {
                let mut c: Vec<Contribution> = self
                    .components
                    .iter()
                    .filter(|c| c.weight > 0.0)
                    .map(|c| Contribution {
                        role: c.role.clone(),
                        rank: 0,
                        value: c.weight,
                    })
                    .collect();
                c.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.role.cmp(&b.role)));
                c
            }
        };
        let text = self.explanation(user, item, now, &contributions);
        (!text.is_empty()).then_some(Reason::Text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::dataset;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A component with a fixed ranking and a fixed reason; counts observations.
    struct Fixed(Vec<u32>, Option<Reason>, Rc<Cell<usize>>);
    impl OnlineRecommender for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn recommend(&self, _u: u32, k: usize, ex: &[bool], _n: i64) -> Vec<u32> {
            self.0
                .iter()
                .copied()
                .filter(|&i| !ex.get(i as usize).copied().unwrap_or(false))
                .take(k)
                .collect()
        }
        fn observe(&mut self, _x: &Interaction) -> Result<(), RecommendError> {
            self.2.set(self.2.get() + 1);
            Ok(())
        }
        fn explain(&self, _u: u32, _i: u32, _n: i64) -> Option<Reason> {
            self.1.clone()
        }
    }

    fn fusion(wa: f32, wb: f32) -> Fusion {
        fusion_counted(wa, wb).0
    }

    /// The fusion of two fixed lists, and the two components' observation counts.
    fn fusion_counted(wa: f32, wb: f32) -> (Fusion, [Rc<Cell<usize>>; 2]) {
        let mut ds = dataset(1, 5, &[]);
        ds.items[4].title = "Godfather, The".into();
        let counts = [Rc::new(Cell::new(0)), Rc::new(Cell::new(0))];
        let a = Component {
            role: "cf".into(),
            weight: wa,
            model: Box::new(Fixed(
                vec![0, 1, 2],
                Some(Reason::BecauseYouWatched(4)),
                counts[0].clone(),
            )),
        };
        let b = Component {
            role: "graph".into(),
            weight: wb,
            model: Box::new(Fixed(vec![2, 3, 0], None, counts[1].clone())),
        };
        let f = Fusion::new("hybrid", &ds, vec![a, b], FusionConfig::default()).unwrap();
        (f, counts)
    }

    #[test]
    fn scores_are_weighted_reciprocal_ranks() {
        let f = fusion(0.3, 0.4);
        let r = f.recommend_explained(0, 4, &[], 0);
        // item 2: 0.3/63 + 0.4/61; item 0: 0.3/61 + 0.4/63; item 3: 0.4/62; item 1: 0.3/62.
        let want = [
            (2, 0.3 / 63.0 + 0.4 / 61.0),
            (0, 0.3 / 61.0 + 0.4 / 63.0),
            (3, 0.4 / 62.0),
            (1, 0.3 / 62.0),
        ];
        for (got, (item, score)) in r.iter().zip(want) {
            assert_eq!(got.item, item);
            assert!((got.score - score as f32).abs() < 1e-7);
        }
        assert_eq!(r[0].contributions[0].role, "graph");
        assert_eq!(r[0].contributions[1].rank, 3);
        // Item 2's top contributor (graph) cannot explain; cf can.
        assert_eq!(r[0].explanation, "Because you watched The Godfather");
        assert_eq!(r[2].explanation, "Ranked #2 by graph");
        // Changing the weights changes the order.
        let g = fusion(0.9, 0.1);
        assert_eq!(g.recommend(0, 2, &[], 0), [0, 2]);
        // explain() works for items outside the fused lists too.
        assert_eq!(
            f.explain(0, 4, 0),
            Some(Reason::Text("Because you watched The Godfather".into()))
        );
        assert_eq!(f.explain(0, 9, 0), None);
        // The list-level function agrees with the model.
        let plain = rrf(&[&[0, 1, 2], &[2, 3, 0]], &[0.3, 0.4], 60.0, 4);
        assert_eq!(plain.iter().map(|x| x.0).collect::<Vec<_>>(), [2, 0, 3, 1]);
        assert!((plain[0].1 - r[0].score).abs() < 1e-7);
        // Exclusions pass through.
        assert_eq!(f.recommend(0, 2, &[false, false, true], 0), [0, 3]);
    }

    #[test]
    fn observe_reaches_every_component_and_rejects_bad_items() {
        let (mut f, counts) = fusion_counted(0.5, 0.5);
        f.observe(&Interaction {
            user: 0,
            item: 1,
            rating: 4.0,
            timestamp: 0,
        })
        .unwrap();
        assert_eq!(counts.each_ref().map(|c| c.get()), [1, 1]);
        assert!(f
            .observe(&Interaction {
                user: 0,
                item: 5,
                rating: 4.0,
                timestamp: 0
            })
            .is_err());
        // A rejected event reaches no component.
        assert_eq!(counts.each_ref().map(|c| c.get()), [1, 1]);
        let ds = dataset(1, 5, &[]);
        assert!(Fusion::new("x", &ds, Vec::new(), FusionConfig::default()).is_err());
    }
}
