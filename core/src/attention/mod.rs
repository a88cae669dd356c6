//! Attention mechanisms behind one batched interface.
//!
//! Every mechanism reads row-major `f32` buffers with explicit shapes — queries
//! `[n_q × d]`, keys `[n_k × d]`, values `[n_k × d_v]` — and writes `[n_q × d_v]`
//! into a caller-owned buffer. Inputs some mechanisms need (a mask, a graph, edge
//! features, graph positions, a tree over the keys) travel in [`Extras`].
//!
//! Every entry point validates shapes and rejects NaN/inf with an [`AttnError`]
//! before touching the output; nothing on a public path panics on bad input.
//!
//! The catalog ([`registry::MECHANISMS`]) lists only mechanisms that are
//! implemented here and tested against a reference or their defining formula:
//! 14 mechanisms plus the Poincaré-ball operations in [`hyperbolic`].
//!
//! | name | reference test | property test | reads |
//! |---|---|---|---|
//! | `dot_product` | f64 formula | one-hot query returns its value | mask |
//! | `multi_head` | f64 per-head reference; 1 head + identity = dot-product | finite-difference gradients (W_q, W_k, W_v, W_o) | mask |
//! | `flash` | equals `dot_product` within 1e-5 | scratch O(block), overflow-free online rescaling | mask |
//! | `linear` | explicit quadratic form | keys enter through an additive fixed-size state | — |
//! | `hyperbolic` | distance + gyromidpoint formula | commutes with Möbius translations | mask |
//! | `moe` | gate-weighted expert sum | only top-k experts run; FD gradients (gate, experts) | mask |
//! | `graph_rope` | explicit rotation | depends only on relative position | positions, mask |
//! | `edge_featured` | GAT formula on neighbours | edge features steer weights; FD gradients | edge_feats, adjacency, mask |
//! | `dual_space` | weighted sum of both scores | extremes reduce to each space | mask |
//! | `local_global` | dense with pattern mask | work linear in n; far keys ignored | mask |
//! | `sparse` | dense with block mask | skipped blocks cost nothing and do not matter | mask |
//! | `cross` | projected reference; identity = dot-product | query rows do not interact; FD gradients | mask |
//! | `neighborhood` | dense with (A+I)^k mask | keys beyond k hops invisible | adjacency, query_nodes, mask |
//! | `hierarchical` | product of sibling softmaxes | subtree mass decided at its root level | parents |
//!
//! [`selector`] picks three of them for a query text (FastGRNN from [`crate::router`]).

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

pub mod cross;
pub mod dot_product;
pub mod dual_space;
pub mod edge_featured;
pub mod flash;
pub mod graph_rope;
pub mod hierarchical;
pub mod hyperbolic;
pub mod hyperbolic_attn;
pub mod linear;
pub mod local_global;
pub(crate) mod math;
pub mod moe;
pub mod multi_head;
pub mod neighborhood;
pub mod registry;
pub mod selector;
pub mod selector_data;
pub mod sparse;

pub use registry::{build, MechanismInfo, Registry, RegistryConfig, MECHANISMS};

use thiserror::Error;

/// Marker for "no parent" in [`Extras::parents`].
pub const ROOT: u32 = u32::MAX;

/// Errors from attention mechanisms. Nothing is written to the output when one is returned.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AttnError {
    #[error("{what} has length {got}, expected {expected}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("dimension {what} must be greater than zero")]
    ZeroDim { what: &'static str },
    #[error("{what} contains a non-finite value (NaN or inf) at index {index}")]
    NonFinite { what: &'static str, index: usize },
    #[error("mechanism `{mechanism}` needs the extra input `{extra}`")]
    MissingExtra {
        mechanism: &'static str,
        extra: &'static str,
    },
    #[error("mechanism `{mechanism}` was built for {what} = {expected}, the input has {got}")]
    ConfigMismatch {
        mechanism: &'static str,
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("invalid {what}: {msg}")]
    Invalid { what: &'static str, msg: String },
    #[error("unknown attention mechanism `{0}`")]
    Unknown(String),
}

/// A graph over the `n_k` key nodes in compressed-sparse-row form:
/// the neighbours of node `u` are `targets[offsets[u]..offsets[u + 1]]`.
#[derive(Clone, Copy, Debug)]
pub struct Csr<'a> {
    pub offsets: &'a [u32],
    pub targets: &'a [u32],
}

impl<'a> Csr<'a> {
    /// Neighbours of node `u`; empty when `u` or its offsets are out of range.
    pub fn neighbours(&self, u: usize) -> &'a [u32] {
        match (self.offsets.get(u), self.offsets.get(u + 1)) {
            (Some(&a), Some(&b)) => self.targets.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Dense per-pair edge features: `data[(i * n_k + j) * d_e ..][..d_e]` describes the pair (query i, key j).
#[derive(Clone, Copy, Debug)]
pub struct EdgeFeats<'a> {
    pub data: &'a [f32],
    pub d_e: usize,
}

/// Scalar graph positions (for example hop distance from an anchor node) of every query and key.
#[derive(Clone, Copy, Debug)]
pub struct Positions<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
}

/// Optional inputs; each mechanism documents which it reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras<'a> {
    /// `[n_q × n_k]`, `true` where query i may attend to key j.
    pub mask: Option<&'a [bool]>,
    /// Graph over the key nodes.
    pub adjacency: Option<Csr<'a>>,
    /// Graph node of every query (`[n_q]`, values < n_k). Absent: query i is node i (needs n_q == n_k).
    pub query_nodes: Option<&'a [u32]>,
    /// Per-pair edge features.
    pub edge_feats: Option<EdgeFeats<'a>>,
    /// Graph positions of queries and keys.
    pub positions: Option<Positions<'a>>,
    /// Tree over the keys: parent of every key (`[n_k]`), [`ROOT`] for roots.
    pub parents: Option<&'a [u32]>,
}

/// One batched attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnInput<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub n_q: usize,
    pub n_k: usize,
    pub d: usize,
    pub d_v: usize,
    pub extras: Extras<'a>,
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), AttnError> {
    if got != expected {
        return Err(AttnError::Shape {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Rejects NaN/inf with the index of the first offender.
pub fn check_finite(what: &'static str, xs: &[f32]) -> Result<(), AttnError> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(AttnError::NonFinite { what, index }),
        None => Ok(()),
    }
}

impl<'a> AttnInput<'a> {
    /// An input without extras.
    pub fn new(
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        n_q: usize,
        n_k: usize,
        d: usize,
        d_v: usize,
    ) -> Self {
        AttnInput {
            q,
            k,
            v,
            n_q,
            n_k,
            d,
            d_v,
            extras: Extras::default(),
        }
    }

    /// The same input with `extras`.
    pub fn with_extras(mut self, extras: Extras<'a>) -> Self {
        self.extras = extras;
        self
    }

    /// Checks every shape, every value for finiteness, every extra that is present,
    /// and the output length (`n_q * d_v`).
    pub fn validate(&self, out_len: usize) -> Result<(), AttnError> {
        for (what, x) in [
            ("n_q", self.n_q),
            ("n_k", self.n_k),
            ("d", self.d),
            ("d_v", self.d_v),
        ] {
            if x == 0 {
                return Err(AttnError::ZeroDim { what });
            }
        }
        let (n_q, n_k) = (self.n_q, self.n_k);
        // Every size product used downstream must fit in usize (wasm32 included).
        let fits = [
            n_q.checked_mul(self.d),
            n_k.checked_mul(self.d),
            n_k.checked_mul(self.d_v),
            n_q.checked_mul(self.d_v),
            n_q.checked_mul(n_k),
        ];
        if fits.iter().any(|x| x.is_none()) {
            return Err(AttnError::Invalid {
                what: "shape",
                msg: format!(
                    "sizes overflow: n_q={n_q} n_k={n_k} d={} d_v={}",
                    self.d, self.d_v
                ),
            });
        }
        check_len("queries", self.q.len(), n_q * self.d)?;
        check_len("keys", self.k.len(), n_k * self.d)?;
        check_len("values", self.v.len(), n_k * self.d_v)?;
        check_len("output", out_len, n_q * self.d_v)?;
        check_finite("queries", self.q)?;
        check_finite("keys", self.k)?;
        check_finite("values", self.v)?;
        let e = &self.extras;
        if let Some(m) = e.mask {
            check_len("mask", m.len(), n_q * n_k)?;
        }
        if let Some(g) = e.adjacency {
            check_len("adjacency offsets", g.offsets.len(), n_k + 1)?;
            if g.offsets[0] != 0 || g.offsets[n_k] as usize != g.targets.len() {
                return Err(AttnError::Invalid {
                    what: "adjacency",
                    msg: "offsets must start at 0 and end at targets.len()".into(),
                });
            }
            if g.offsets.windows(2).any(|w| w[0] > w[1]) {
                return Err(AttnError::Invalid {
                    what: "adjacency",
                    msg: "offsets must be non-decreasing".into(),
                });
            }
            if let Some(&t) = g.targets.iter().find(|&&t| t as usize >= n_k) {
                return Err(AttnError::Invalid {
                    what: "adjacency",
                    msg: format!("target {t} out of range for {n_k} nodes"),
                });
            }
        }
        if let Some(qn) = e.query_nodes {
            check_len("query_nodes", qn.len(), n_q)?;
            if let Some(&t) = qn.iter().find(|&&t| t as usize >= n_k) {
                return Err(AttnError::Invalid {
                    what: "query_nodes",
                    msg: format!("node {t} out of range for {n_k} nodes"),
                });
            }
        }
        if let Some(ef) = e.edge_feats {
            if ef.d_e == 0 {
                return Err(AttnError::ZeroDim { what: "d_e" });
            }
            let want = (n_q * n_k).checked_mul(ef.d_e).ok_or(AttnError::Invalid {
                what: "edge features",
                msg: "n_q · n_k · d_e overflows".into(),
            })?;
            check_len("edge features", ef.data.len(), want)?;
            check_finite("edge features", ef.data)?;
        }
        if let Some(p) = e.positions {
            check_len("query positions", p.q.len(), n_q)?;
            check_len("key positions", p.k.len(), n_k)?;
            check_finite("query positions", p.q)?;
            check_finite("key positions", p.k)?;
        }
        if let Some(par) = e.parents {
            check_len("parents", par.len(), n_k)?;
            if let Some(&t) = par.iter().find(|&&t| t != ROOT && t as usize >= n_k) {
                return Err(AttnError::Invalid {
                    what: "parents",
                    msg: format!("parent {t} out of range for {n_k} nodes"),
                });
            }
        }
        Ok(())
    }

    /// Graph node of query `i` (validated inputs only).
    pub fn query_node(&self, i: usize) -> usize {
        match self.extras.query_nodes {
            Some(qn) => qn[i] as usize,
            None => i,
        }
    }

    /// Fails unless queries can be placed on the key graph (explicit nodes, or n_q == n_k).
    pub fn require_query_nodes(&self, mechanism: &'static str) -> Result<(), AttnError> {
        if self.extras.query_nodes.is_none() && self.n_q != self.n_k {
            return Err(AttnError::MissingExtra {
                mechanism,
                extra: "query_nodes (needed when n_q != n_k)",
            });
        }
        Ok(())
    }
}

/// An attention mechanism over the batched interface.
pub trait Attention {
    /// Registry name, e.g. `"flash"`.
    fn name(&self) -> &'static str;
    /// Writes `[n_q × d_v]` into `out`. On error, `out` is left untouched.
    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError>;
}

#[cfg(test)]
pub(crate) mod testutil;
