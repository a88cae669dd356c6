//! The recommendation strategies a query can be routed to (spec names).

use serde::{Deserialize, Serialize};

/// A recommendation strategy. The discriminant is the model's class index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// "like X", "similar to X": graph neighbourhood of a title.
    GnnSimilarity = 0,
    /// "find", "search": attribute / keyword lookup.
    VectorSearch = 1,
    /// "feeling", "mood", "something light".
    MoodMatching = 2,
    /// "new", "latest", "this week".
    CatalogFreshness = 3,
    /// "where can I watch X".
    AvailabilityCheck = 4,
    /// "for me", "recommend".
    PersonalizedHybrid = 5,
}

impl Route {
    /// All routes in class-index order.
    pub const ALL: [Route; 6] = [
        Route::GnnSimilarity,
        Route::VectorSearch,
        Route::MoodMatching,
        Route::CatalogFreshness,
        Route::AvailabilityCheck,
        Route::PersonalizedHybrid,
    ];

    /// Number of routes (= classifier outputs).
    pub const COUNT: usize = 6;

    /// The spec's snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Route::GnnSimilarity => "gnn_similarity",
            Route::VectorSearch => "vector_search",
            Route::MoodMatching => "mood_matching",
            Route::CatalogFreshness => "catalog_freshness",
            Route::AvailabilityCheck => "availability_check",
            Route::PersonalizedHybrid => "personalized_hybrid",
        }
    }

    /// Class index used by the classifier.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Route for a class index.
    pub fn from_index(i: usize) -> Option<Route> {
        Route::ALL.get(i).copied()
    }

    /// Parse a spec name; `None` if unknown.
    pub fn from_name(s: &str) -> Option<Route> {
        Route::ALL.iter().copied().find(|r| r.name() == s)
    }
}

impl core::fmt::Display for Route {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indices_round_trip() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Route::from_index(i), Some(*r));
            assert_eq!(Route::from_name(r.name()), Some(*r));
        }
        assert_eq!(Route::from_name("nope"), None);
        assert_eq!(Route::from_index(Route::COUNT), None);
    }
}
