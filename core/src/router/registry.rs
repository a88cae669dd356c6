//! The routes registry (`models/routes.json`): per route its handler endpoint,
//! average latency, cost per request and the confidence threshold below which a
//! decision falls back to the configured fallback route.
//!
//! ```json
//! { "fallback_route": "personalized_hybrid",
//!   "routes": { "gnn_similarity": { "handler": "/v1/…", "avg_latency_ms": 40,
//!               "cost_per_request": 0.00002, "accuracy_threshold": 0.5 }, … } }
//! ```
//! All six routes must be present; unknown route names are rejected.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::RouterError;
use super::route::Route;

/// One route's entry.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub handler: String,
    pub avg_latency_ms: f64,
    pub cost_per_request: f64,
    /// Minimum router confidence (top probability, 0..1) to accept this route.
    pub accuracy_threshold: f32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    fallback_route: String,
    routes: BTreeMap<String, RouteSpec>,
}

/// Parsed, validated registry.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRegistry {
    pub fallback: Route,
    /// Indexed by [`Route::index`].
    pub routes: [RouteSpec; 6],
}

/// The registry shipped in `models/routes.json`.
pub const SHIPPED_ROUTES_JSON: &str = include_str!("../../../models/routes.json");

impl RouteRegistry {
    /// Parse and validate registry JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RouterError> {
        let raw: RawRegistry =
            serde_json::from_slice(bytes).map_err(|e| RouterError::Registry(e.to_string()))?;
        let fallback = Route::from_name(&raw.fallback_route).ok_or_else(|| {
            RouterError::Registry(format!("unknown fallback route {:?}", raw.fallback_route))
        })?;
        for name in raw.routes.keys() {
            if Route::from_name(name).is_none() {
                return Err(RouterError::Registry(format!("unknown route {name:?}")));
            }
        }
        let mut specs = Vec::with_capacity(6);
        for r in Route::ALL {
            let s = raw
                .routes
                .get(r.name())
                .ok_or_else(|| RouterError::Registry(format!("route {} is missing", r.name())))?;
            if !(s.accuracy_threshold.is_finite() && (0.0..=1.0).contains(&s.accuracy_threshold)) {
                return Err(RouterError::Registry(format!(
                    "{}: accuracy_threshold {} not in [0, 1]",
                    r.name(),
                    s.accuracy_threshold
                )));
            }
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(s.avg_latency_ms) || !ok(s.cost_per_request) {
                return Err(RouterError::Registry(format!(
                    "{}: latency and cost must be finite and >= 0",
                    r.name()
                )));
            }
            if s.handler.trim().is_empty() {
                return Err(RouterError::Registry(format!(
                    "{}: empty handler",
                    r.name()
                )));
            }
            specs.push(s.clone());
        }
        let routes: [RouteSpec; 6] = specs.try_into().expect("six routes");
        Ok(RouteRegistry { fallback, routes })
    }

    /// The registry compiled in from `models/routes.json`.
    pub fn shipped() -> Self {
        Self::from_json(SHIPPED_ROUTES_JSON.as_bytes())
            .expect("models/routes.json is validated by a unit test")
    }

    pub fn spec(&self, r: Route) -> &RouteSpec {
        &self.routes[r.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_registry_parses() {
        let r = RouteRegistry::from_json(SHIPPED_ROUTES_JSON.as_bytes()).unwrap();
        assert_eq!(r.fallback, Route::PersonalizedHybrid);
        // Each route gets its own entry (not, say, the JSON's alphabetical order).
        for route in Route::ALL {
            let want = format!("/v1/strategies/{}", route.name().replace('_', "-"));
            assert_eq!(r.spec(route).handler, want, "{route}");
        }
        assert_eq!(r.spec(Route::PersonalizedHybrid).accuracy_threshold, 0.0);
    }

    #[test]
    fn spec_of_a_route_is_that_routes_json_entry() {
        // Distinct values per route, keys written in reverse index order.
        let mut routes = serde_json::Map::new();
        for r in Route::ALL.into_iter().rev() {
            let i = r.index() as f64;
            routes.insert(
                r.name().to_string(),
                serde_json::json!({
                    "handler": format!("/h/{}", r.name()),
                    "avg_latency_ms": 10.0 * i,
                    "cost_per_request": i / 1000.0,
                    "accuracy_threshold": i / 8.0,
                }),
            );
        }
        let v = serde_json::json!({"fallback_route": "mood_matching", "routes": routes});
        let reg = RouteRegistry::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(reg.fallback, Route::MoodMatching);
        for r in Route::ALL {
            let i = r.index() as f64;
            let s = reg.spec(r);
            assert_eq!(s.handler, format!("/h/{}", r.name()));
            assert_eq!(s.avg_latency_ms, 10.0 * i);
            assert_eq!(s.cost_per_request, i / 1000.0);
            assert_eq!(s.accuracy_threshold, (i / 8.0) as f32);
        }
    }

    #[test]
    fn invalid_registries_are_rejected() {
        let good: serde_json::Value = serde_json::from_str(SHIPPED_ROUTES_JSON).unwrap();
        let mut cases = Vec::new();
        let mut v = good.clone();
        v["fallback_route"] = "nope".into();
        cases.push(v);
        let mut v = good.clone();
        v["routes"].as_object_mut().unwrap().remove("mood_matching");
        cases.push(v);
        let mut v = good.clone();
        v["routes"]["mood_matching"]["accuracy_threshold"] = 1.5.into();
        cases.push(v);
        let mut v = good.clone();
        v["routes"]["vector_search"]["cost_per_request"] = (-1.0).into();
        cases.push(v);
        let mut v = good.clone();
        v["routes"]["extra_route"] = v["routes"]["vector_search"].clone();
        cases.push(v);
        for c in cases {
            let b = serde_json::to_vec(&c).unwrap();
            assert!(matches!(
                RouteRegistry::from_json(&b),
                Err(RouterError::Registry(_))
            ));
        }
        assert!(RouteRegistry::from_json(b"{").is_err());
    }
}
