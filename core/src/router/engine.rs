//! The router: a loaded model plus the routes registry → [`RouteDecision`]s.

use serde::Serialize;

use super::error::RouterError;
use super::fastgrnn::{InputKind, SeqInput};
use super::format::Model;
use super::registry::RouteRegistry;
use super::route::Route;
use super::tokenizer::{Tokenizer, Tokens};

/// The outcome of routing one query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteDecision {
    /// The route to use (the fallback route when `fell_back`).
    pub route: Route,
    /// Probability of the model's top route.
    pub confidence: f32,
    /// Probability per route, indexed by [`Route::index`].
    pub scores: [f32; 6],
    /// True when `confidence` was below the top route's `accuracy_threshold`.
    pub fell_back: bool,
    /// The model's top route (equal to `route` unless `fell_back`).
    pub original_route: Route,
}

/// A six-route classifier with its registry.
#[derive(Clone, Debug)]
pub struct Router {
    model: Model,
    meta: String,
    tokenizer: Option<Tokenizer>,
    /// `class_route[k]` = the route of model class `k`.
    class_route: [Route; 6],
    registry: RouteRegistry,
}

impl Router {
    /// Load a model file, with the registry shipped in `models/routes.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RouterError> {
        Self::with_registry(bytes, RouteRegistry::shipped())
    }

    /// Load a model file with an explicit registry.
    pub fn with_registry(bytes: &[u8], registry: RouteRegistry) -> Result<Self, RouterError> {
        let (model, meta) = Model::from_bytes(bytes)?;
        Self::from_model(model, meta, registry)
    }

    /// Wrap an in-memory model whose class labels are the six route names.
    pub fn from_model(
        model: Model,
        meta: String,
        registry: RouteRegistry,
    ) -> Result<Self, RouterError> {
        let labels = model.labels();
        let not_routes = || RouterError::NotARouteModel {
            found: labels.to_vec(),
        };
        if labels.len() != Route::COUNT {
            return Err(not_routes());
        }
        let mut class_route = [Route::GnnSimilarity; 6];
        let mut seen = [false; 6];
        for (k, l) in labels.iter().enumerate() {
            let r = Route::from_name(l).ok_or_else(not_routes)?;
            if seen[r.index()] {
                return Err(not_routes());
            }
            seen[r.index()] = true;
            class_route[k] = r;
        }
        Ok(Router {
            tokenizer: model.tokenizer(),
            model,
            meta,
            class_route,
            registry,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Free-text metadata stored in the model file.
    pub fn meta(&self) -> &str {
        &self.meta
    }

    pub fn registry(&self) -> &RouteRegistry {
        &self.registry
    }

    /// True when this router reads text (false: it reads query embeddings).
    pub fn reads_text(&self) -> bool {
        matches!(self.model.config().input, InputKind::Text { .. })
    }

    /// Number of floats [`Router::route_embedding`] expects (0 for text routers).
    pub fn embedding_dim(&self) -> usize {
        match self.model.config().input {
            InputKind::Features {
                steps, step_dim, ..
            } => steps * step_dim,
            InputKind::Text { .. } => 0,
        }
    }

    /// Route a text query.
    pub fn route_text(&self, query: &str) -> Result<RouteDecision, RouterError> {
        let tk = self.tokenizer.as_ref().ok_or_else(|| {
            RouterError::InvalidInput(format!(
                "this router reads {}-float query embeddings, not text",
                self.embedding_dim()
            ))
        })?;
        let mut tok = Tokens::default();
        tk.tokenize_into(query, &mut tok);
        if tok.is_empty() {
            return Err(RouterError::EmptyQuery);
        }
        let p = self.model.predict(SeqInput::Tokens(&tok))?;
        Ok(self.decide(&p))
    }

    /// Route a query embedding (e.g. 384 floats from all-MiniLM-L6-v2).
    pub fn route_embedding(&self, embedding: &[f32]) -> Result<RouteDecision, RouterError> {
        if self.reads_text() {
            return Err(RouterError::InvalidInput(
                "this router reads text, not embeddings".into(),
            ));
        }
        let p = self.model.predict(SeqInput::Features(embedding))?;
        Ok(self.decide(&p))
    }

    fn decide(&self, probs: &[f32]) -> RouteDecision {
        let mut scores = [0.0f32; 6];
        for (k, &p) in probs.iter().enumerate() {
            scores[self.class_route[k].index()] = p;
        }
        let mut top = 0;
        for i in 1..6 {
            if scores[i] > scores[top] {
                top = i;
            }
        }
        let original = Route::ALL[top];
        let confidence = scores[top];
        let threshold = self.registry.spec(original).accuracy_threshold;
        let fell_back = confidence < threshold;
        RouteDecision {
            route: if fell_back {
                self.registry.fallback
            } else {
                original
            },
            confidence,
            scores,
            fell_back,
            original_route: original,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::classifier::Classifier;
    use super::super::fastgrnn::ModelConfig;
    use super::super::fastgrnn::Pool;
    use super::super::registry::SHIPPED_ROUTES_JSON;
    use super::super::tokenizer::TokenizerConfig;
    use super::*;

    fn router(threshold: f32, labels: Vec<String>) -> Result<Router, RouterError> {
        router_with(|_| threshold, labels)
    }

    /// A router whose route `r` has confidence threshold `threshold(r)`.
    fn router_with(
        threshold: impl Fn(Route) -> f32,
        labels: Vec<String>,
    ) -> Result<Router, RouterError> {
        let cfg = ModelConfig {
            input: InputKind::Text {
                tokenizer: TokenizerConfig {
                    n_buckets: 64,
                    ..Default::default()
                },
                emb_dim: 4,
            },
            hidden: 4,
            n_classes: 6,
            w_rank: None,
            u_rank: None,
            pool: Pool::Last,
        };
        let c = Classifier::init(cfg, labels, 1)?;
        let mut v: serde_json::Value = serde_json::from_str(SHIPPED_ROUTES_JSON).unwrap();
        for r in Route::ALL {
            v["routes"][r.name()]["accuracy_threshold"] = threshold(r).into();
        }
        v["fallback_route"] = "vector_search".into();
        let reg = RouteRegistry::from_json(&serde_json::to_vec(&v).unwrap())?;
        Router::from_model(Model::F32(c), String::new(), reg)
    }

    fn names() -> Vec<String> {
        // Deliberately not in index order: scores must be re-keyed by route.
        let mut n: Vec<String> = Route::ALL.iter().map(|r| r.name().to_string()).collect();
        n.reverse();
        n
    }

    #[test]
    fn decision_is_consistent_and_falls_back_below_threshold() {
        let r = router(0.0, names()).unwrap();
        let d = r.route_text("movies like heat").unwrap();
        assert!(!d.fell_back);
        assert_eq!(d.route, d.original_route);
        let s: f32 = d.scores.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        assert_eq!(d.confidence, d.scores[d.route.index()]);
        assert!(d.scores.iter().all(|&p| p <= d.confidence));
        // Class k of the model is route 5-k: check the re-keying.
        let p = r
            .model()
            .predict(SeqInput::Tokens(
                &r.tokenizer.as_ref().unwrap().tokenize("movies like heat"),
            ))
            .unwrap();
        for (k, pk) in p.iter().enumerate() {
            assert_eq!(d.scores[5 - k], *pk);
        }

        let r = router(1.0, names()).unwrap();
        let d2 = r.route_text("movies like heat").unwrap();
        assert!(d2.fell_back);
        assert_eq!(d2.route, Route::VectorSearch);
        assert_eq!(d2.original_route, d.original_route);
    }

    #[test]
    fn only_the_top_routes_own_threshold_counts_and_equal_is_accepted() {
        let q = "movies like heat";
        let d = router(0.0, names()).unwrap().route_text(q).unwrap();
        let top = d.original_route;
        let c = d.confidence;
        assert!(c > 0.0 && c < 1.0, "{c}");
        // Every other route demands certainty; the top route's own threshold is
        // exactly its confidence: not below it, so no fallback.
        let r = router_with(|x| if x == top { c } else { 1.0 }, names()).unwrap();
        let d1 = r.route_text(q).unwrap();
        assert!(!d1.fell_back, "{d1:?}");
        assert_eq!(d1.route, top);
        assert_eq!(d1.confidence, c);
        // The top route's threshold one ulp above its confidence, every other 0.
        let above = f32::from_bits(c.to_bits() + 1);
        let r = router_with(|x| if x == top { above } else { 0.0 }, names()).unwrap();
        let d2 = r.route_text(q).unwrap();
        assert!(d2.fell_back, "{d2:?}");
        assert_eq!(d2.route, Route::VectorSearch);
        assert_eq!(d2.original_route, top);
    }

    #[test]
    fn bad_inputs_and_models_are_errors() {
        let r = router(0.0, names()).unwrap();
        assert_eq!(r.route_text("  ?! "), Err(RouterError::EmptyQuery));
        assert!(r.route_embedding(&[0.0; 384]).is_err());
        let mut bad = names();
        bad[0] = "nope".into();
        assert!(matches!(
            router(0.0, bad),
            Err(RouterError::NotARouteModel { .. })
        ));
        let mut dup = names();
        dup[0] = dup[1].clone();
        assert!(router(0.0, dup).is_err());
        assert!(Router::from_bytes(b"garbage").is_err());
    }
}
