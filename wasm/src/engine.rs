//! The engine façade in plain Rust: typed inputs in, JSON-shaped outputs out.
//!
//! Everything here delegates to `sona_core`; the JS bindings in `lib.rs` only
//! convert JS values to these types and back. Keeping this layer free of
//! `wasm-bindgen` lets the native golden test (`tests/native_goldens.rs`) run the
//! exact code path the npm package runs.
//!
//! Every input is validated (by this layer or by the core call it delegates to)
//! before any state changes, so a rejected call leaves the engine as it was.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sona_core::attention::selector::{AttentionSelector, SelectorError};
use sona_core::codec::{open, seal, CodecError};
use sona_core::msgpack::{MsgpackError, Reader, Writer};
use sona_core::personalize::{
    Adapter, AdapterUpdate, BaseProjection, Device, GlobalAdapter, InteractionContext,
    InteractionKind, Observation, PersonalizeConfig, PersonalizeError, ViewerInteraction,
};
use sona_core::recommend::device::{
    DeviceContext, DeviceItem, DeviceRanker, DeviceRequest, ViewerHistory, ROLES,
};
use sona_core::recommend::RecommendError;
use sona_core::rng::Rng;
use sona_core::router::{select_model, RouteDecision, Router, RouterError, SelectModelError};

/// Why a façade call was rejected. Turned into a JS `Error` at the boundary.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("router: {0}")]
    Router(#[from] RouterError),
    #[error("personalization: {0}")]
    Personalize(#[from] PersonalizeError),
    #[error("selectModel: {0}")]
    SelectModel(#[from] SelectModelError),
    #[error("attention selector: {0}")]
    Selector(#[from] SelectorError),
    #[error("selectAttention: no attention selector is loaded (pass `attention` to Engine.load)")]
    NoSelector,
    #[error("saved state: {0}")]
    State(#[from] CodecError),
    #[error("{what}: {err}")]
    Recommend {
        what: &'static str,
        err: RecommendError,
    },
    #[error("{0}")]
    Input(String),
    #[error("{what}: no catalog is loaded (call loadCatalog first)")]
    NoCatalog { what: &'static str },
}

fn input<T>(msg: impl Into<String>) -> Result<T, EngineError> {
    Err(EngineError::Input(msg.into()))
}

/// Rejects NaN / ±inf with the position of the first bad value.
pub fn check_finite(what: &str, v: &[f32]) -> Result<(), EngineError> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => input(format!(
            "{what}: value at index {i} is not finite ({})",
            v[i]
        )),
    }
}

/// One catalog title as the host supplies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogItem {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub genres: Vec<String>,
    #[serde(default)]
    pub year: Option<u16>,
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// The titles the engine ranks (kept for the output) and the core's per-catalog ranker.
#[derive(Clone, Debug)]
struct Catalog {
    items: Vec<CatalogItem>,
    ranker: DeviceRanker,
}

/// The interaction context as JS sends it (camelCase).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContextInput {
    #[serde(default)]
    pub hour_of_day: Option<u8>,
    #[serde(default)]
    pub day_of_week: Option<u8>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub moods: Vec<String>,
}

/// The `recommend` context as JS sends it (camelCase); every key optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecommendContextInput {
    #[serde(default)]
    pub hour_of_day: Option<u8>,
    #[serde(default)]
    pub day_of_week: Option<u8>,
    #[serde(default)]
    pub device: Option<String>,
}

fn device(s: Option<&str>) -> Result<Option<Device>, EngineError> {
    Ok(match s {
        None => None,
        Some(s) => Some(s.parse()?),
    })
}

/// One `recordInteraction` call.
#[derive(Clone, Debug)]
pub struct InteractionInput {
    pub content_id: String,
    pub kind: String,
    pub rating: Option<f64>,
    pub context: ContextInput,
    /// Unix seconds.
    pub now: f64,
    /// The query / profile embedding the title was shown for; defaults to the
    /// embedding of the last `recommend` call.
    pub embedding: Option<Vec<f32>>,
}

/// One `recommend` call.
#[derive(Clone, Debug)]
pub struct RecommendInput<'a> {
    /// Routed when present; its words are matched against genres, years and titles.
    pub query: Option<&'a str>,
    /// The query embedding (d floats); without it the viewer's profile stands in.
    pub embedding: Option<&'a [f32]>,
    pub k: f64,
    /// Content ids that must not be returned (e.g. already watched).
    pub exclude: Vec<String>,
    pub context: Option<RecommendContextInput>,
    /// Unix seconds.
    pub now: f64,
}

/// `saveState` payload: MessagePack map `{user_id: str, adapter: bin, global: bin}`,
/// written and read by hand ([`sona_core::msgpack`]; the bytes are what
/// `rmp_serde::to_vec_named` wrote for the former serde struct, `tests/state_format.rs`).
struct SavedState {
    user_id: String,
    adapter: Vec<u8>,
    global: Vec<u8>,
    /// Recent interactions, `ViewerHistory::to_bytes` (empty in states saved before the
    /// fused ranking, which have no such field).
    history: Vec<u8>,
}

const STATE_FIELDS: &[&str] = &["user_id", "adapter", "global", "history"];

impl SavedState {
    fn to_msgpack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(STATE_FIELDS.len());
        w.str(STATE_FIELDS[0]);
        w.str(&self.user_id);
        w.str(STATE_FIELDS[1]);
        w.bin(&self.adapter);
        w.str(STATE_FIELDS[2]);
        w.bin(&self.global);
        w.str(STATE_FIELDS[3]);
        w.bin(&self.history);
        w.buf
    }

    fn from_msgpack(b: &[u8]) -> Result<Self, MsgpackError> {
        let mut r = Reader::new(b);
        let mut f = r.fields("SavedState", STATE_FIELDS)?;
        let (mut user_id, mut adapter, mut global, mut history) = (None, None, None, None);
        while let Some(i) = f.next(&mut r)? {
            match i {
                0 => user_id = Some(r.str()?.to_string()),
                1 => adapter = Some(r.bin()?),
                2 => global = Some(r.bin()?),
                _ => history = Some(r.bin()?),
            }
        }
        Ok(SavedState {
            user_id: f.need(user_id, 0)?,
            adapter: f.need(adapter, 1)?,
            global: f.need(global, 2)?,
            history: history.unwrap_or_default(),
        })
    }
}

const STATE_MAGIC: [u8; 4] = *b"SNWS";
const STATE_VERSION: u16 = 1;

/// Keys of the personalization config as JS spells them (camelCase of the core's fields).
/// The keys are Rust field names (ASCII), so ASCII upper-casing is all it takes (and keeps
/// the ~12 KB Unicode upper-case table out of the wasm).
fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Re-key a JSON object tree from snake_case to camelCase (outputs of core types).
pub fn camel_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (camel(&k), camel_keys(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

/// Parse a camelCase personalization config over the core defaults; unknown keys are errors.
pub fn personalize_config(js: Option<&Value>) -> Result<PersonalizeConfig, EngineError> {
    let default = serde_json::to_value(PersonalizeConfig::default())
        .map_err(|e| EngineError::Input(e.to_string()))?;
    let Value::Object(mut merged) = default else {
        return input("internal: config is not an object");
    };
    if let Some(v) = js {
        let Value::Object(m) = v else {
            return input("personalize must be an object");
        };
        let known: Vec<String> = merged.keys().map(|k| camel(k)).collect();
        for (k, v) in m {
            let Some(snake) = merged.keys().find(|s| camel(s) == *k).cloned() else {
                return input(format!(
                    "personalize: unknown option {k:?} (expected one of {})",
                    known.join(", ")
                ));
            };
            merged.insert(snake, v.clone());
        }
    }
    let cfg: PersonalizeConfig = serde_json::from_value(Value::Object(merged))
        .map_err(|e| EngineError::Input(format!("personalize: {e}")))?;
    cfg.validate()?;
    Ok(cfg)
}

fn decision_json(d: &RouteDecision) -> Value {
    let scores: Map<String, Value> = sona_core::router::Route::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(d.scores[r.index()])))
        .collect();
    json!({
        "route": d.route.name(),
        "confidence": d.confidence,
        "scores": scores,
        "fellBack": d.fell_back,
        "originalRoute": d.original_route.name(),
    })
}

/// The whole engine: router, the viewer's adapter, and an optional catalog.
pub struct EngineCore {
    router: Router,
    cfg: PersonalizeConfig,
    base: Arc<BaseProjection>,
    adapter: Adapter,
    /// The same shared tiers with a zero per-viewer tier: `⟨shared(q), e⟩` is the
    /// query-match part of a score, the rest is what this viewer's tier adds.
    shared: Adapter,
    catalog: Option<Catalog>,
    attention: Option<AttentionSelector>,
    rng: Rng,
    /// The query (or profile) embedding of the last `recommend` call.
    last_embedding: Option<Vec<f32>>,
    /// The viewer's recent interactions (graph seeds, profile, context preferences).
    history: ViewerHistory,
}

impl EngineCore {
    /// A fresh engine for `user_id` with the router model bytes and a personalization config.
    pub fn new(
        router_bytes: &[u8],
        cfg: PersonalizeConfig,
        user_id: &str,
    ) -> Result<Self, EngineError> {
        let router = Router::from_bytes(router_bytes)?;
        cfg.validate()?;
        let base = Arc::new(BaseProjection::identity(cfg.d));
        let global = Arc::new(GlobalAdapter::zero(&cfg));
        let adapter = Adapter::new(user_id, &cfg, base.clone(), global.clone())?;
        let shared = Adapter::new(user_id, &cfg, base.clone(), global)?;
        Ok(EngineCore {
            router,
            rng: Rng::new(cfg.seed),
            cfg,
            base,
            adapter,
            shared,
            catalog: None,
            attention: None,
            last_embedding: None,
            history: ViewerHistory::default(),
        })
    }

    /// Embedding dimension of the adapter and catalog.
    pub fn dim(&self) -> usize {
        self.cfg.d
    }

    pub fn user_id(&self) -> &str {
        self.adapter.user_id()
    }

    /// Route a text query.
    pub fn route(&self, text: &str) -> Result<Value, EngineError> {
        Ok(decision_json(&self.router.route_text(text)?))
    }

    /// Route a query embedding (only for routers trained on embeddings).
    pub fn route_embedding(&self, e: &[f32]) -> Result<Value, EngineError> {
        check_finite("routeEmbedding", e)?;
        Ok(decision_json(&self.router.route_embedding(e)?))
    }

    /// Load the attention selector model (e.g. `models/attention-selector.bin`).
    pub fn load_attention(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        let (sel, _meta) = AttentionSelector::from_bytes(bytes)?;
        self.attention = Some(sel);
        Ok(())
    }

    /// The three attention mechanisms the selector picks for a query, weights summing to 1.
    pub fn select_attention(&self, text: &str) -> Result<Value, EngineError> {
        let sel = self.attention.as_ref().ok_or(EngineError::NoSelector)?;
        if sona_core::router::tokenizer::words(text).is_empty() {
            return Err(RouterError::EmptyQuery.into());
        }
        let picks = sel.select(text)?;
        Ok(Value::Array(
            picks
                .iter()
                .map(|s| json!({"mechanism": s.mechanism, "weight": s.weight}))
                .collect(),
        ))
    }

    /// Cost-aware LLM choice for a route.
    pub fn select_model(
        &self,
        route: &str,
        complexity: f64,
        budget: f64,
    ) -> Result<Value, EngineError> {
        let c = select_model(route, complexity, budget)?;
        let v = serde_json::to_value(c).map_err(|e| EngineError::Input(e.to_string()))?;
        Ok(camel_keys(v))
    }

    /// `W' q` for one embedding (base + global + this viewer's tier).
    pub fn adapt_embeddings(&self, q: &[f32]) -> Result<(Vec<f32>, f32), EngineError> {
        Ok(self.adapter.adapt_embedding(q)?)
    }

    /// Replace the catalog. `embeddings` is n × d row-major, ids must be unique.
    /// `related` (optional): `{id: [[otherId, weight > 0], …]}` (e.g. co-watch counts);
    /// titles without a list use their embedding neighbours.
    pub fn load_catalog(
        &mut self,
        items: Vec<CatalogItem>,
        embeddings: Vec<f32>,
        related: Option<&Value>,
    ) -> Result<usize, EngineError> {
        let d = self.cfg.d;
        let mut rel = Vec::new();
        if let Some(v) = related {
            let Value::Object(m) = v else {
                return input("loadCatalog related: expected an object {id: [[id, weight], …]}");
            };
            for (id, list) in m {
                let pairs = list.as_array().map(|a| {
                    a.iter()
                        .map(|p| match p.as_array().map(|x| x.as_slice()) {
                            Some([Value::String(o), Value::Number(w)]) => {
                                Some((o.clone(), w.as_f64()? as f32))
                            }
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                });
                match pairs {
                    Some(Some(p)) => rel.push((id.clone(), p)),
                    _ => {
                        return input(format!(
                            "loadCatalog related[{id:?}]: expected an array of [id, weight] pairs"
                        ))
                    }
                }
            }
        }
        let device_items: Vec<DeviceItem> = items
            .iter()
            .map(|it| DeviceItem {
                id: it.id.clone(),
                title: it.title.clone(),
                genres: it.genres.clone(),
                year: it.year,
            })
            .collect();
        let ranker = DeviceRanker::new(d, device_items, embeddings, rel).map_err(|err| {
            EngineError::Recommend {
                what: "loadCatalog",
                err,
            }
        })?;
        let n = items.len();
        self.catalog = Some(Catalog { items, ranker });
        Ok(n)
    }

    pub fn catalog_size(&self) -> usize {
        self.catalog.as_ref().map_or(0, |c| c.items.len())
    }

    /// The fused ranking of sona-core's device recommender (see
    /// `sona_core::recommend::device`): the routed query picks the strategy weights.
    pub fn recommend(&mut self, req: &RecommendInput<'_>) -> Result<Value, EngineError> {
        let d = self.cfg.d;
        let Some(cat) = self.catalog.as_mut() else {
            return Err(EngineError::NoCatalog { what: "recommend" });
        };
        if !(req.k.is_finite() && req.k >= 1.0 && req.k.fract() == 0.0) {
            return input(format!(
                "recommend: k must be a whole number ≥ 1, got {}",
                req.k
            ));
        }
        if let Some(e) = req.embedding {
            if e.len() != d {
                return input(format!(
                    "recommend: embedding has {} floats, expected d = {d}",
                    e.len()
                ));
            }
            check_finite("recommend embedding", e)?;
        }
        if !(req.now.is_finite() && req.now.abs() < 1e15) {
            return input(format!("recommend: now is not a valid time ({})", req.now));
        }
        let context = match &req.context {
            None => None,
            Some(c) => Some(DeviceContext {
                hour_of_day: c.hour_of_day,
                day_of_week: c.day_of_week,
                device: device(c.device.as_deref())?,
            }),
        };
        let decision = match req.query {
            Some(q) => Some(self.router.route_text(q)?),
            None => None,
        };
        let mut exclude = Vec::with_capacity(req.exclude.len());
        for id in &req.exclude {
            match cat.ranker.index_of(id) {
                Some(i) => exclude.push(i),
                None => return input(format!("recommend: exclude names unknown item {id:?}")),
            }
        }
        let ranking = cat
            .ranker
            .recommend(
                &DeviceRequest {
                    route: decision.as_ref().map(|d| d.route),
                    text: req.query,
                    query: req.embedding,
                    context,
                    exclude: &exclude,
                    k: req.k as usize,
                    now: req.now.floor() as i64,
                },
                &self.adapter,
                &self.shared,
                &self.history,
            )
            .map_err(|err| EngineError::Recommend {
                what: "recommend",
                err,
            })?;
        let items: Vec<Value> = ranking
            .items
            .iter()
            .map(|r| {
                let it = &cat.items[r.item as usize];
                let strategies: Vec<Value> = r
                    .contributions
                    .iter()
                    .map(|c| json!({"strategy": c.role, "rank": c.rank, "contribution": c.value}))
                    .collect();
                json!({
                    "id": it.id,
                    "title": it.title,
                    "genres": it.genres,
                    "year": it.year,
                    "score": r.score,
                    "queryScore": r.query_score,
                    "personalScore": r.personal_score,
                    "strategies": strategies,
                    "explanation": r.explanation,
                })
            })
            .collect();
        let weights: Map<String, Value> = ROLES
            .iter()
            .zip(ranking.weights)
            .map(|(r, w)| (r.to_string(), json!(w)))
            .collect();
        if let Some(e) = req.embedding {
            self.last_embedding = Some(e.to_vec());
        }
        Ok(json!({
            "route": decision.as_ref().map(decision_json),
            "weights": weights,
            "items": items,
        }))
    }

    /// Record one interaction with a catalog title: the adapter learns when its
    /// decision rule says so, and the title joins the viewer's recent history (graph
    /// seeds, profile, context preferences). Returns the core's `UpdateOutcome` (camelCase).
    pub fn record_interaction(&mut self, x: InteractionInput) -> Result<Value, EngineError> {
        let Some(cat) = self.catalog.as_ref() else {
            return Err(EngineError::NoCatalog {
                what: "recordInteraction",
            });
        };
        let Some(i) = cat.ranker.index_of(&x.content_id) else {
            return input(format!(
                "recordInteraction: unknown contentId {:?} (not in the loaded catalog)",
                x.content_id
            ));
        };
        let stars = match x.rating {
            None => None,
            Some(r) if r.is_finite() => Some(r as f32),
            Some(r) => return input(format!("recordInteraction: rating is not finite ({r})")),
        };
        let kind = InteractionKind::parse(&x.kind, stars)?;
        if !(x.now.is_finite() && x.now.abs() < 1e15) {
            return input(format!(
                "recordInteraction: now is not a valid time ({})",
                x.now
            ));
        }
        let dev = device(x.context.device.as_deref())?;
        let interaction = ViewerInteraction {
            kind,
            content_id: x.content_id.clone(),
            context: InteractionContext {
                hour_of_day: x.context.hour_of_day.unwrap_or(0),
                day_of_week: x.context.day_of_week.unwrap_or(0),
                device: dev.unwrap_or_default(),
                moods: x.context.moods.clone(),
            },
        };
        interaction.validate()?;
        let item = cat.ranker.embedding(i);
        // The embedding the title was shown for: given, else the last recommend call's,
        // else the title's own (it was picked for what it is).
        let query = match (&x.embedding, &self.last_embedding) {
            (Some(e), _) => e.as_slice(),
            (None, Some(e)) => e.as_slice(),
            (None, None) => item,
        };
        let now = x.now.floor() as i64;
        let strength = interaction.strength(&self.cfg);
        let mut history = self.history.clone();
        history
            .record(
                &x.content_id,
                strength,
                DeviceContext {
                    hour_of_day: x.context.hour_of_day,
                    day_of_week: x.context.day_of_week,
                    device: dev,
                },
                now,
            )
            .map_err(|err| EngineError::Recommend {
                what: "recordInteraction",
                err,
            })?;
        let out = self.adapter.update_from_interaction(
            &interaction,
            now,
            Observation { query, item },
            cat.ranker.embeddings(),
            &mut self.rng,
        )?;
        self.history = history;
        let v = serde_json::to_value(out).map_err(|e| EngineError::Input(e.to_string()))?;
        Ok(camel_keys(v))
    }

    /// Learn from buffered interactions now, ignoring the decision thresholds.
    pub fn flush(&mut self, now: f64) -> Result<Value, EngineError> {
        let Some(cat) = self.catalog.as_ref() else {
            return Err(EngineError::NoCatalog { what: "flush" });
        };
        if !now.is_finite() {
            return input(format!("flush: now is not a valid time ({now})"));
        }
        let out = self.adapter.adapt_pending(
            now.floor() as i64,
            cat.ranker.embeddings(),
            &mut self.rng,
        )?;
        let v = serde_json::to_value(out).map_err(|e| EngineError::Input(e.to_string()))?;
        Ok(camel_keys(v))
    }

    /// The adapter's learning state (camelCase `AdapterStats`).
    pub fn stats(&self) -> Result<Value, EngineError> {
        let v = serde_json::to_value(self.adapter.stats())
            .map_err(|e| EngineError::Input(e.to_string()))?;
        Ok(camel_keys(v))
    }

    /// The federated update for the sync server: the core's sealed MessagePack `AdapterUpdate`.
    pub fn export_update(&self) -> Vec<u8> {
        self.adapter.export_update().to_bytes()
    }

    /// Install a newer global tier (the server's sealed `GlobalAdapter` bytes); returns its version.
    pub fn apply_global(&mut self, bytes: &[u8]) -> Result<u64, EngineError> {
        let mut adapter = self.adapter.clone();
        let v = adapter.apply_global(bytes)?;
        let shared = Adapter::new(
            self.adapter.user_id(),
            &self.cfg,
            self.base.clone(),
            adapter.global().clone(),
        )?;
        self.adapter = adapter;
        self.shared = shared;
        Ok(v)
    }

    /// The viewer's adapter and the global tier it runs on, in one sealed envelope.
    pub fn save_state(&self) -> Vec<u8> {
        let state = SavedState {
            user_id: self.adapter.user_id().to_string(),
            adapter: self.adapter.to_bytes(),
            global: self.adapter.global().to_bytes(),
            history: self.history.to_bytes(),
        };
        seal(STATE_MAGIC, STATE_VERSION, &state.to_msgpack())
    }

    /// Restore [`save_state`](Self::save_state) bytes; they must match this engine's user and config.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        const W: &str = "engine state";
        let payload = open(W, STATE_MAGIC, STATE_VERSION, bytes)?;
        let s = SavedState::from_msgpack(payload).map_err(|e| CodecError::Payload {
            what: W,
            msg: e.to_string(),
        })?;
        if s.user_id != self.adapter.user_id() {
            return input(format!(
                "loadState: the state belongs to user {:?}, this engine is for {:?}",
                s.user_id,
                self.adapter.user_id()
            ));
        }
        let global = Arc::new(GlobalAdapter::from_bytes(&s.global, &self.cfg)?);
        let adapter = Adapter::from_bytes(
            &s.adapter,
            &s.user_id,
            &self.cfg,
            self.base.clone(),
            global.clone(),
        )?;
        let shared = Adapter::new(&s.user_id, &self.cfg, self.base.clone(), global)?;
        let history = if s.history.is_empty() {
            ViewerHistory::default()
        } else {
            ViewerHistory::from_bytes(&s.history).map_err(|err| EngineError::Recommend {
                what: "loadState",
                err,
            })?
        };
        self.adapter = adapter;
        self.shared = shared;
        self.history = history;
        Ok(())
    }

    /// Decode an exported update (for hosts and tests that want to inspect it).
    pub fn decode_update(bytes: &[u8]) -> Result<Value, EngineError> {
        let u = AdapterUpdate::from_bytes(bytes)?;
        Ok(json!({
            "userId": u.user_id,
            "globalVersion": u.global_version,
            "d": u.d,
            "rank": u.rank,
            "alpha": u.alpha,
            "scale": u.scale,
            "sampleCount": u.sample_count,
        }))
    }
}
