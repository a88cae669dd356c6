//! # sona-wasm
//!
//! The SONA engine for browsers and Node: a thin `wasm-bindgen` façade over
//! `sona-core`. No algorithm lives here: [`engine`] turns typed inputs into core
//! calls, and this file converts JS values (objects, `Float32Array`,
//! `Uint8Array`) to those inputs and core results back to plain JS objects.
//! Every rejected input becomes a thrown JS `Error` whose message says what was
//! wrong; nothing is changed by a rejected call.

pub mod engine;

use engine::{
    CatalogItem, ContextInput, EngineCore, EngineError, InteractionInput, RecommendContextInput,
    RecommendInput,
};
use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array, JSON};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(typescript_custom_section)]
const _TS_NOTE: &str = "// Curated types are in index.d.ts; these are the raw bindings.";

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js(v: &Value) -> Result<JsValue, JsError> {
    let s = serde_json::to_string(v).map_err(js_err)?;
    JSON::parse(&s).map_err(|_| JsError::new("internal: output is not JSON"))
}

/// `JSON.stringify` + serde_json: plain data in, without a serde-wasm-bindgen dependency.
fn from_js(what: &str, v: &JsValue) -> Result<Value, JsError> {
    let s = JSON::stringify(v)
        .map_err(|_| JsError::new(&format!("{what}: not serializable as JSON")))?;
    let s: String = s.into();
    serde_json::from_str(&s).map_err(|e| JsError::new(&format!("{what}: {e}")))
}

/// A plain JS object's own keys, checked against the names an option bag may use.
fn options<'a>(what: &str, v: &'a JsValue, allowed: &[&str]) -> Result<&'a Object, JsError> {
    let Some(o) = v
        .dyn_ref::<Object>()
        .filter(|_| v.is_object() && !Array::is_array(v))
    else {
        return Err(JsError::new(&format!("{what}: expected an options object")));
    };
    for k in Object::keys(o).iter() {
        let k = k.as_string().unwrap_or_default();
        if !allowed.contains(&k.as_str()) {
            return Err(JsError::new(&format!(
                "{what}: unknown option {k:?} (expected one of {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(o)
}

/// The property, or `None` when it is missing, `undefined` or `null`.
fn field(o: &Object, key: &str) -> Option<JsValue> {
    let v = Reflect::get(o, &JsValue::from_str(key)).ok()?;
    if v.is_undefined() || v.is_null() {
        None
    } else {
        Some(v)
    }
}

fn bytes(what: &str, v: &JsValue) -> Result<Vec<u8>, JsError> {
    v.dyn_ref::<Uint8Array>()
        .map(|a| a.to_vec())
        .ok_or_else(|| JsError::new(&format!("{what}: expected a Uint8Array")))
}

fn floats(what: &str, v: &JsValue) -> Result<Vec<f32>, JsError> {
    v.dyn_ref::<Float32Array>()
        .map(|a| a.to_vec())
        .ok_or_else(|| JsError::new(&format!("{what}: expected a Float32Array")))
}

fn string(what: &str, v: Option<JsValue>) -> Result<String, JsError> {
    match v {
        Some(v) => v
            .as_string()
            .ok_or_else(|| JsError::new(&format!("{what}: expected a string"))),
        None => Err(JsError::new(&format!("{what} is required"))),
    }
}

/// A query string in NFKC, the form the core tokenizer reads. The wasm build of sona-core has
/// no Unicode tables of its own (no `nfkc` feature), so non-ASCII text is normalized here with
/// JavaScript's `String.prototype.normalize("NFKC")`; ASCII is already NFKC. Native builds
/// (the golden test) leave it to the core, which normalizes in Rust.
fn query_text(v: &JsValue) -> Option<String> {
    let s = v.as_string()?;
    #[cfg(target_arch = "wasm32")]
    if !s.is_ascii() {
        return v
            .dyn_ref::<js_sys::JsString>()?
            .normalize("NFKC")
            .as_string();
    }
    Some(s)
}

fn number(what: &str, v: &JsValue) -> Result<f64, JsError> {
    v.as_f64()
        .ok_or_else(|| JsError::new(&format!("{what}: expected a number")))
}

fn err(e: EngineError) -> JsError {
    js_err(e)
}

/// The SONA engine: router, on-device personalization and catalog ranking.
#[wasm_bindgen]
pub struct Engine {
    core: EngineCore,
}

#[wasm_bindgen]
impl Engine {
    /// `Engine.load({router, attention?, personalize?, userId?, state?})`.
    /// `router`: the router model file bytes; `personalize`: camelCase overrides of the
    /// core's `PersonalizeConfig`; `userId` (default "viewer"); `state`: bytes from `saveState`.
    pub fn load(options_obj: JsValue) -> Result<Engine, JsError> {
        let o = options(
            "Engine.load",
            &options_obj,
            &["router", "attention", "personalize", "userId", "state"],
        )?;
        let router = match field(o, "router") {
            Some(v) => bytes("Engine.load router", &v)?,
            None => return Err(JsError::new("Engine.load: router (Uint8Array) is required")),
        };
        let cfg_json = match field(o, "personalize") {
            Some(v) => Some(from_js("Engine.load personalize", &v)?),
            None => None,
        };
        let cfg = engine::personalize_config(cfg_json.as_ref()).map_err(err)?;
        let user = match field(o, "userId") {
            Some(v) => string("Engine.load userId", Some(v))?,
            None => "viewer".to_string(),
        };
        let mut core = EngineCore::new(&router, cfg, &user).map_err(err)?;
        if let Some(v) = field(o, "attention") {
            core.load_attention(&bytes("Engine.load attention", &v)?)
                .map_err(err)?;
        }
        if let Some(v) = field(o, "state") {
            core.load_state(&bytes("Engine.load state", &v)?)
                .map_err(err)?;
        }
        Ok(Engine { core })
    }

    /// `new Engine(routerBytes)`: `Engine.load({router})` with every default.
    #[wasm_bindgen(constructor)]
    pub fn new(router: JsValue) -> Result<Engine, JsError> {
        let o = Object::new();
        Reflect::set(&o, &JsValue::from_str("router"), &router)
            .map_err(|_| JsError::new("new Engine: could not build options"))?;
        Engine::load(o.into())
    }

    /// Embedding dimension the adapter and catalog use.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.core.dim()
    }

    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> String {
        self.core.user_id().to_string()
    }

    #[wasm_bindgen(getter, js_name = catalogSize)]
    pub fn catalog_size(&self) -> usize {
        self.core.catalog_size()
    }

    /// `{route, confidence, scores, fellBack, originalRoute}` for a text query.
    pub fn route(&self, text: JsValue) -> Result<JsValue, JsError> {
        let t = query_text(&text).ok_or_else(|| JsError::new("route: expected a string"))?;
        to_js(&self.core.route(&t).map_err(err)?)
    }

    /// Route a query embedding (routers trained on embeddings only).
    #[wasm_bindgen(js_name = routeEmbedding)]
    pub fn route_embedding(&self, embedding: JsValue) -> Result<JsValue, JsError> {
        let e = floats("routeEmbedding", &embedding)?;
        to_js(&self.core.route_embedding(&e).map_err(err)?)
    }

    /// The attention selector's top three mechanisms: `[{mechanism, weight}]`, weights sum to 1.
    #[wasm_bindgen(js_name = selectAttention)]
    pub fn select_attention(&self, text: JsValue) -> Result<JsValue, JsError> {
        let t =
            query_text(&text).ok_or_else(|| JsError::new("selectAttention: expected a string"))?;
        to_js(&self.core.select_attention(&t).map_err(err)?)
    }

    /// Cost-aware model choice: `{modelId, estimatedCost, …}`.
    #[wasm_bindgen(js_name = selectModel)]
    pub fn select_model(
        &self,
        route: JsValue,
        complexity: JsValue,
        budget: JsValue,
    ) -> Result<JsValue, JsError> {
        let r = route
            .as_string()
            .ok_or_else(|| JsError::new("selectModel: route must be a string"))?;
        let c = number("selectModel complexity", &complexity)?;
        let b = number("selectModel budget", &budget)?;
        to_js(&self.core.select_model(&r, c, b).map_err(err)?)
    }

    /// `W' q`: the embedding through the base projection and both LoRA tiers.
    #[wasm_bindgen(js_name = adaptEmbeddings)]
    pub fn adapt_embeddings(&self, embedding: JsValue) -> Result<Float32Array, JsError> {
        let q = floats("adaptEmbeddings", &embedding)?;
        let (y, _) = self.core.adapt_embeddings(&q).map_err(err)?;
        Ok(Float32Array::from(y.as_slice()))
    }

    /// `‖W' q − W q‖ / ‖W q‖`: how much the LoRA tiers change this embedding.
    #[wasm_bindgen(js_name = adaptationMagnitude)]
    pub fn adaptation_magnitude(&self, embedding: JsValue) -> Result<f32, JsError> {
        let q = floats("adaptationMagnitude", &embedding)?;
        Ok(self.core.adapt_embeddings(&q).map_err(err)?.1)
    }

    /// `loadCatalog({items: [{id, title, genres?, year?, platforms?}], embeddings: Float32Array,
    /// related?: {[id]: [[id, weight], …]}})`.
    #[wasm_bindgen(js_name = loadCatalog)]
    pub fn load_catalog(&mut self, catalog: JsValue) -> Result<usize, JsError> {
        let o = options("loadCatalog", &catalog, &["items", "embeddings", "related"])?;
        let items_js =
            field(o, "items").ok_or_else(|| JsError::new("loadCatalog: items is required"))?;
        if !Array::is_array(&items_js) {
            return Err(JsError::new("loadCatalog: items must be an array"));
        }
        let items: Vec<CatalogItem> =
            serde_json::from_value(from_js("loadCatalog items", &items_js)?)
                .map_err(|e| JsError::new(&format!("loadCatalog items: {e}")))?;
        let emb = match field(o, "embeddings") {
            Some(v) => floats("loadCatalog embeddings", &v)?,
            None => return Err(JsError::new("loadCatalog: embeddings is required")),
        };
        let related = match field(o, "related") {
            Some(v) => Some(from_js("loadCatalog related", &v)?),
            None => None,
        };
        self.core
            .load_catalog(items, emb, related.as_ref())
            .map_err(err)
    }

    /// `recommend({query?, embedding?, context?, k?, exclude?, now?})` → `{route, weights,
    /// items: [{id, title, genres, year, score, queryScore, personalScore, strategies,
    /// explanation}]}`: sona-core's fused on-device ranking.
    pub fn recommend(&mut self, request: JsValue) -> Result<JsValue, JsError> {
        let o = options(
            "recommend",
            &request,
            &["query", "embedding", "context", "k", "exclude", "now"],
        )?;
        let query = match field(o, "query") {
            Some(v) => Some(
                query_text(&v).ok_or_else(|| JsError::new("recommend query: expected a string"))?,
            ),
            None => None,
        };
        let embedding = match field(o, "embedding") {
            Some(v) => Some(floats("recommend embedding", &v)?),
            None => None,
        };
        let k = match field(o, "k") {
            Some(v) => number("recommend k", &v)?,
            None => 10.0,
        };
        let exclude = match field(o, "exclude") {
            Some(v) => serde_json::from_value::<Vec<String>>(from_js("recommend exclude", &v)?)
                .map_err(|e| JsError::new(&format!("recommend exclude: {e}")))?,
            None => Vec::new(),
        };
        let context = match field(o, "context") {
            Some(v) => Some(
                serde_json::from_value::<RecommendContextInput>(from_js("recommend context", &v)?)
                    .map_err(|e| JsError::new(&format!("recommend context: {e}")))?,
            ),
            None => None,
        };
        let now = match field(o, "now") {
            Some(v) => number("recommend now", &v)?,
            None => js_sys::Date::now() / 1000.0,
        };
        let req = RecommendInput {
            query: query.as_deref(),
            embedding: embedding.as_deref(),
            k,
            exclude,
            context,
            now,
        };
        to_js(&self.core.recommend(&req).map_err(err)?)
    }

    /// `recordInteraction({contentId, type, rating?, context?, now?, embedding?})` →
    /// the adapter's `UpdateOutcome` (`{adapted, decision, strength, …}`).
    #[wasm_bindgen(js_name = recordInteraction)]
    pub fn record_interaction(&mut self, interaction: JsValue) -> Result<JsValue, JsError> {
        let o = options(
            "recordInteraction",
            &interaction,
            &["contentId", "type", "rating", "context", "now", "embedding"],
        )?;
        let content_id = string("recordInteraction contentId", field(o, "contentId"))?;
        let kind = string("recordInteraction type", field(o, "type"))?;
        let rating = match field(o, "rating") {
            Some(v) => Some(number("recordInteraction rating", &v)?),
            None => None,
        };
        let context: ContextInput = match field(o, "context") {
            Some(v) => serde_json::from_value(from_js("recordInteraction context", &v)?)
                .map_err(|e| JsError::new(&format!("recordInteraction context: {e}")))?,
            None => ContextInput::default(),
        };
        let now = match field(o, "now") {
            Some(v) => number("recordInteraction now", &v)?,
            None => js_sys::Date::now() / 1000.0,
        };
        let embedding = match field(o, "embedding") {
            Some(v) => Some(floats("recordInteraction embedding", &v)?),
            None => None,
        };
        let out = self
            .core
            .record_interaction(InteractionInput {
                content_id,
                kind,
                rating,
                context,
                now,
                embedding,
            })
            .map_err(err)?;
        to_js(&out)
    }

    /// Learn from the buffered interactions now (ignores the adaptation thresholds).
    pub fn flush(&mut self, now: JsValue) -> Result<JsValue, JsError> {
        let t = if now.is_undefined() {
            js_sys::Date::now() / 1000.0
        } else {
            number("flush now", &now)?
        };
        to_js(&self.core.flush(t).map_err(err)?)
    }

    /// The adapter's learning state.
    pub fn stats(&self) -> Result<JsValue, JsError> {
        to_js(&self.core.stats().map_err(err)?)
    }

    /// The federated update for the sync server (sealed MessagePack `AdapterUpdate`).
    #[wasm_bindgen(js_name = exportUpdate)]
    pub fn export_update(&self) -> Uint8Array {
        Uint8Array::from(self.core.export_update().as_slice())
    }

    /// Install a newer global tier from the sync server; returns its version.
    #[wasm_bindgen(js_name = applyGlobal)]
    pub fn apply_global(&mut self, bytes_js: JsValue) -> Result<f64, JsError> {
        let b = bytes("applyGlobal", &bytes_js)?;
        Ok(self.core.apply_global(&b).map_err(err)? as f64)
    }

    /// The viewer's adapter and global tier as bytes (store them, e.g. in IndexedDB).
    #[wasm_bindgen(js_name = saveState)]
    pub fn save_state(&self) -> Uint8Array {
        Uint8Array::from(self.core.save_state().as_slice())
    }

    /// Restore bytes from `saveState`.
    #[wasm_bindgen(js_name = loadState)]
    pub fn load_state(&mut self, bytes_js: JsValue) -> Result<(), JsError> {
        let b = bytes("loadState", &bytes_js)?;
        self.core.load_state(&b).map_err(err)
    }

    /// Inspect an `exportUpdate` payload: `{userId, globalVersion, d, rank, alpha, scale, sampleCount}`.
    #[wasm_bindgen(js_name = decodeUpdate)]
    pub fn decode_update(bytes_js: JsValue) -> Result<JsValue, JsError> {
        let b = bytes("decodeUpdate", &bytes_js)?;
        to_js(&EngineCore::decode_update(&b).map_err(err)?)
    }
}
