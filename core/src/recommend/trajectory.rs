//! The trajectory memory: "viewers who watched A watched B right before or after
//! it", kept per exact title and learned live from the interaction stream. It is
//! the exact-title half of the SONA layer's memory; [`super::memory`] is the
//! similarity half (states matched by embedding through the ReasoningBank).
//!
//! **Learning.** When a viewer watches `b`, each of their previous `max_gap`
//! titles `a` (gap `g` = 1 for the latest) adds `1/g` to the link `a → b`, and,
//! with `symmetric`, to `b → a` as well. A link is learned on the device and
//! reaches the other devices through the sync server, so it becomes usable
//! `sync_delay_secs` after the event (the viewer's own links too), as the
//! ReasoningBank's patterns do.
//!
//! **Ranking.** Titles are ranked by the strength of their link from the viewer's
//! latest title; titles with no link are not listed (the list can be shorter
//! than `k`). Symmetric links make the memory indifferent to the order of titles
//! rated in the same second (MovieLens stores whole rating pages under one
//! timestamp, and any order a replay gives them is arbitrary).

use std::collections::VecDeque;

use super::{
    check_interaction, time_order, top_k, OnlineRecommender, Reason, RecentTitles, RecommendError,
};
use crate::data::{Dataset, Interaction};

#[derive(Clone, Debug, PartialEq)]
pub struct TrajectoryConfig {
    /// How many of the viewer's previous titles a new title is linked to.
    pub max_gap: usize,
    /// Link both ways (`a → b` and `b → a`).
    pub symmetric: bool,
    /// How long a new link takes to reach the devices (upload + fetch).
    pub sync_delay_secs: i64,
    /// Learn links from observed events (false: read only).
    pub learn: bool,
}

impl Default for TrajectoryConfig {
    fn default() -> Self {
        TrajectoryConfig {
            max_gap: 2,
            symmetric: true,
            sync_delay_secs: 3_600,
            learn: true,
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct TrajectoryMemory {
    cfg: TrajectoryConfig,
    /// `links[a]`: `(b, strength)`, sorted by `b`.
    links: Vec<Vec<(u32, f32)>>,
    /// Each viewer's last `max_gap` titles.
    recent: RecentTitles,
    /// Links on their way to the devices: (usable from, a, b, strength).
    pending: VecDeque<(i64, u32, u32, f32)>,
    titles: Vec<String>,
}

impl TrajectoryMemory {
    /// An empty memory over `history`'s catalog. Each viewer's latest titles are
    /// taken from their history in `history` (time order).
    pub fn new(history: &Dataset, cfg: &TrajectoryConfig) -> Result<Self, RecommendError> {
        if cfg.max_gap == 0 || cfg.sync_delay_secs < 0 {
            return Err(RecommendError::InvalidConfig(format!(
                "trajectory: max_gap ≥ 1 and sync_delay_secs ≥ 0 (got {cfg:?})"
            )));
        }
        let n_items = history.n_items();
        let mut m = TrajectoryMemory {
            cfg: cfg.clone(),
            links: vec![Vec::new(); n_items],
            recent: RecentTitles::new(history.n_users(), cfg.max_gap),
            pending: VecDeque::new(),
            titles: history.items.iter().map(|i| i.display_title()).collect(),
        };
        for x in time_order(history) {
            m.check(x)?;
            m.recent.push(x.user, x.item);
        }
        Ok(m)
    }

    /// Learns from `history` as if it had been streamed live (time order).
    /// Viewers' recent titles restart from their first title.
    pub fn warm_up(&mut self, history: &Dataset) -> Result<(), RecommendError> {
        let order = time_order(history);
        for x in &order {
            self.check(x)?;
        }
        self.recent.clear();
        for x in order {
            self.observe(x)?;
        }
        Ok(())
    }

    /// Turns learning on or off (viewers' recent titles keep being followed).
    pub fn set_learning(&mut self, on: bool) {
        self.cfg.learn = on;
    }

    /// Stored links (not counting those in transit).
    pub fn links(&self) -> usize {
        self.links.iter().map(Vec::len).sum()
    }

    /// The strength of the stored link `a → b` (0 when there is none).
    pub fn link(&self, a: u32, b: u32) -> f32 {
        self.links
            .get(a as usize)
            .and_then(|row| row.binary_search_by_key(&b, |e| e.0).ok().map(|p| row[p].1))
            .unwrap_or(0.0)
    }

    fn check(&self, x: &Interaction) -> Result<(), RecommendError> {
        check_interaction(x, self.links.len())
    }

    fn add_link(&mut self, a: u32, b: u32, w: f32) {
        let row = &mut self.links[a as usize];
        match row.binary_search_by_key(&b, |e| e.0) {
            Ok(p) => row[p].1 += w,
            Err(p) => row.insert(p, (b, w)),
        }
    }

    fn flush(&mut self, now: i64) {
        while self.pending.front().is_some_and(|p| p.0 <= now) {
            let (_, a, b, w) = self.pending.pop_front().expect("front checked");
            self.add_link(a, b, w);
        }
    }

    /// Link strength from `a` to every title, counting links in transit that are
    /// usable at `now`; NaN where there is no link.
    fn scores_from(&self, a: u32, now: i64) -> Vec<f32> {
        let mut s = vec![f32::NAN; self.links.len()];
        let mut add = |b: u32, w: f32| {
            let v = &mut s[b as usize];
            *v = if v.is_nan() { w } else { *v + w };
        };
        for &(b, w) in &self.links[a as usize] {
            add(b, w);
        }
        for &(t, from, b, w) in &self.pending {
            if t > now {
                break;
            }
            if from == a {
                add(b, w);
            }
        }
        s
    }
}

impl OnlineRecommender for TrajectoryMemory {
    fn name(&self) -> &str {
        "trajectory"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<u32> {
        match self.recent.latest(user) {
            Some(a) => top_k(&self.scores_from(a, now), k, exclude),
            None => Vec::new(),
        }
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        self.check(x)?;
        self.flush(x.timestamp);
        if self.cfg.learn {
            let usable = x.timestamp.saturating_add(self.cfg.sync_delay_secs);
            let prev: Vec<u32> = self
                .recent
                .get(x.user)
                .map(|r| r.iter().rev().copied().collect())
                .unwrap_or_default();
            for (g, &a) in prev.iter().enumerate() {
                if a == x.item {
                    continue;
                }
                let w = 1.0 / (g as f32 + 1.0);
                self.pending.push_back((usable, a, x.item, w));
                if self.cfg.symmetric {
                    self.pending.push_back((usable, x.item, a, w));
                }
            }
        }
        self.recent.push(x.user, x.item);
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, now: i64) -> Option<Reason> {
        let a = self.recent.latest(user)?;
        let s = *self.scores_from(a, now).get(item as usize)?;
        if s.is_nan() {
            return None;
        }
        let title = self.titles.get(a as usize)?;
        Some(Reason::Text(format!(
            "Viewers who watched {title} watched this right before or after it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::dataset;

    fn ev(user: u32, item: u32, t: i64) -> Interaction {
        Interaction {
            user,
            item,
            rating: 4.0,
            timestamp: t,
        }
    }

    fn cfg() -> TrajectoryConfig {
        TrajectoryConfig {
            sync_delay_secs: 100,
            ..Default::default()
        }
    }

    #[test]
    fn links_follow_the_gap_rule_and_wait_for_the_sync_delay() {
        let ds = dataset(3, 6, &[]);
        let mut m = TrajectoryMemory::new(&ds, &cfg()).unwrap();
        // User 0 watches 0, 1, 2: links 0–1 (gap 1), 1–2 (gap 1), 0–2 (gap 2).
        m.observe(&ev(0, 0, 0)).unwrap();
        m.observe(&ev(0, 1, 10)).unwrap();
        m.observe(&ev(0, 2, 20)).unwrap();
        // Nothing is stored or usable before the delay has passed.
        assert_eq!(m.links(), 0);
        m.observe(&ev(1, 1, 50)).unwrap();
        assert!(m.recommend(1, 5, &[], 50).is_empty());
        // At t = 110 the first two links are usable (in transit, not yet stored)...
        assert_eq!(m.recommend(1, 5, &[], 110), [0]);
        // ...and once every link has arrived, viewer 1 (latest: 1) gets 0 and 2.
        m.observe(&ev(2, 5, 200)).unwrap();
        assert_eq!(m.links(), 6);
        assert_eq!(m.link(0, 1), 1.0);
        assert_eq!(m.link(2, 1), 1.0);
        assert_eq!(m.link(0, 2), 0.5);
        assert_eq!(m.link(2, 0), 0.5);
        assert_eq!(m.link(1, 5), 0.0);
        assert_eq!(m.recommend(1, 5, &[], 200), [0, 2]);
        // Excluded titles are skipped; the explanation names the latest title.
        assert_eq!(m.recommend(1, 5, &[true], 200), [2]);
        match m.explain(1, 2, 200) {
            Some(Reason::Text(t)) => assert!(t.contains("Item 1"), "{t}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.explain(1, 4, 200), None);
    }

    #[test]
    fn stronger_links_rank_first_and_directed_links_stay_one_way() {
        let ds = dataset(4, 6, &[]);
        let mut m = TrajectoryMemory::new(&ds, &cfg()).unwrap();
        // Two viewers go 3 → 4, one goes 3 → 5.
        for (u, b) in [(0, 4), (1, 4), (2, 5)] {
            m.observe(&ev(u, 3, 0)).unwrap();
            m.observe(&ev(u, b, 1)).unwrap();
        }
        m.observe(&ev(3, 3, 500)).unwrap();
        assert_eq!(m.recommend(3, 3, &[], 500), [4, 5]);
        // Viewer 2 (recent: 3, 5) goes back to 3, then to 5 again: each step
        // links 3 and 5 at gap 1 (repeats are not linked to themselves), so
        // 3 → 5 is 1 + 1 + 1 = 3 and now leads 3 → 4 (2).
        m.observe(&ev(2, 3, 600)).unwrap();
        m.observe(&ev(2, 5, 601)).unwrap();
        m.observe(&ev(3, 3, 800)).unwrap();
        assert_eq!(m.link(3, 5), 3.0);
        assert_eq!(m.recommend(3, 3, &[], 800), [5, 4]);
        // Directed: 4 → 3 is never learned.
        let mut d = TrajectoryMemory::new(
            &ds,
            &TrajectoryConfig {
                symmetric: false,
                ..cfg()
            },
        )
        .unwrap();
        d.observe(&ev(0, 3, 0)).unwrap();
        d.observe(&ev(0, 4, 1)).unwrap();
        d.observe(&ev(1, 0, 500)).unwrap();
        assert_eq!((d.link(3, 4), d.link(4, 3)), (1.0, 0.0));
    }

    #[test]
    fn read_only_memory_learns_nothing_and_warm_up_streams_history() {
        let ds = dataset(2, 4, &[(0, 0), (0, 1), (1, 0)]);
        let mut m = TrajectoryMemory::new(&ds, &cfg()).unwrap();
        m.set_learning(false);
        m.observe(&ev(0, 2, 0)).unwrap();
        m.observe(&ev(0, 3, 1000)).unwrap();
        assert_eq!(m.links() + m.pending.len(), 0);
        // The testutil history puts user 0's 0 before 1: warm-up links them.
        let mut w = TrajectoryMemory::new(&ds, &cfg()).unwrap();
        w.warm_up(&ds).unwrap();
        w.observe(&ev(1, 2, 1_000_000)).unwrap();
        assert_eq!(w.link(0, 1), 1.0);
        assert_eq!(w.link(1, 0), 1.0);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let ds = dataset(2, 3, &[(0, 0)]);
        for c in [
            TrajectoryConfig {
                max_gap: 0,
                ..cfg()
            },
            TrajectoryConfig {
                sync_delay_secs: -1,
                ..cfg()
            },
        ] {
            assert!(TrajectoryMemory::new(&ds, &c).is_err(), "{c:?}");
        }
        let mut m = TrajectoryMemory::new(&ds, &cfg()).unwrap();
        assert!(matches!(
            m.observe(&ev(0, 7, 0)),
            Err(RecommendError::ItemOutOfRange { item: 7, .. })
        ));
        let mut nan = ev(0, 1, 0);
        nan.rating = f32::NAN;
        assert!(m.observe(&nan).is_err());
        assert!(m.pending.is_empty());
        assert_eq!(m.recent.latest(0), Some(0));
        // A history with an out-of-range title is refused whole.
        let mut bad = ds.clone();
        bad.interactions.push(ev(1, 9, 5));
        assert!(TrajectoryMemory::new(&bad, &cfg()).is_err());
        let mut w = TrajectoryMemory::new(&ds, &cfg()).unwrap();
        assert!(w.warm_up(&bad).is_err());
        assert_eq!(w.recent.latest(0), Some(0));
    }
}
