//! Name → mechanism registry. It lists exactly the mechanisms implemented and tested in
//! this module: [`MECHANISMS`] has 14 entries.

use super::cross::CrossAttention;
use super::dot_product::DotProduct;
use super::dual_space::DualSpace;
use super::edge_featured::EdgeFeatured;
use super::flash::Flash;
use super::graph_rope::GraphRope;
use super::hierarchical::Hierarchical;
use super::hyperbolic_attn::HyperbolicAttention;
use super::linear::LinearAttention;
use super::local_global::LocalGlobal;
use super::moe::MoeAttention;
use super::multi_head::MultiHead;
use super::neighborhood::Neighborhood;
use super::sparse::BlockSparse;
use super::{Attention, AttnError, AttnInput};

/// Catalog family of a mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Core,
    Graph,
    Specialized,
}

/// What the registry knows about a mechanism.
#[derive(Clone, Copy, Debug)]
pub struct MechanismInfo {
    pub name: &'static str,
    pub family: Family,
    /// Extras the mechanism cannot run without.
    pub needs: &'static [&'static str],
    /// Whether it has learnable parameters with a backward pass.
    pub learnable: bool,
    pub summary: &'static str,
}

const fn info(
    name: &'static str,
    family: Family,
    needs: &'static [&'static str],
    learnable: bool,
    summary: &'static str,
) -> MechanismInfo {
    MechanismInfo {
        name,
        family,
        needs,
        learnable,
        summary,
    }
}

/// Every registered mechanism (14).
pub const MECHANISMS: &[MechanismInfo] = &[
    info(
        "dot_product",
        Family::Core,
        &[],
        false,
        "softmax(QKᵀ/√d)V, materialises the score matrix",
    ),
    info(
        "multi_head",
        Family::Core,
        &[],
        true,
        "h heads with learned Q/K/V/O projections",
    ),
    info(
        "flash",
        Family::Core,
        &[],
        false,
        "tiled online softmax, exact, O(block) memory",
    ),
    info(
        "linear",
        Family::Core,
        &[],
        false,
        "elu+1 feature map, cost linear in n",
    ),
    info(
        "hyperbolic",
        Family::Core,
        &[],
        false,
        "Poincaré ball: −distance weights, gyromidpoint aggregation",
    ),
    info(
        "moe",
        Family::Core,
        &[],
        true,
        "top-k gated mixture of attention experts",
    ),
    info(
        "graph_rope",
        Family::Graph,
        &["positions"],
        false,
        "rotary encoding of graph positions",
    ),
    info(
        "edge_featured",
        Family::Graph,
        &["edge_feats"],
        true,
        "GAT scores with edge features",
    ),
    info(
        "dual_space",
        Family::Graph,
        &[],
        false,
        "Euclidean + hyperbolic scores combined",
    ),
    info(
        "local_global",
        Family::Graph,
        &[],
        false,
        "sliding window plus global tokens",
    ),
    info(
        "sparse",
        Family::Specialized,
        &[],
        false,
        "block-sparse local + strided pattern",
    ),
    info(
        "cross",
        Family::Specialized,
        &[],
        true,
        "queries from one source, keys/values from another",
    ),
    info(
        "neighborhood",
        Family::Specialized,
        &["adjacency"],
        false,
        "k-hop mask from an adjacency list",
    ),
    info(
        "hierarchical",
        Family::Specialized,
        &["parents"],
        false,
        "tree softmax over parent/child levels",
    ),
];

/// Shapes and seed used to build default-configured mechanisms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    pub d: usize,
    pub d_v: usize,
    /// Edge-feature width for `edge_featured`.
    pub d_e: usize,
    pub seed: u64,
}

/// Builds mechanism `name` with its default configuration.
pub fn build(
    name: &str,
    cfg: RegistryConfig,
) -> Result<Box<dyn Attention + Send + Sync>, AttnError> {
    if cfg.d == 0 || cfg.d_v == 0 || cfg.d_e == 0 {
        return Err(AttnError::ZeroDim {
            what: "registry d/d_v/d_e",
        });
    }
    let heads = if cfg.d % 4 == 0 { 4 } else { 1 };
    Ok(match name {
        "dot_product" => Box::new(DotProduct),
        "multi_head" => Box::new(MultiHead::new(
            cfg.d,
            cfg.d_v,
            heads,
            cfg.d / heads,
            cfg.seed,
        )),
        "flash" => Box::new(Flash),
        "linear" => Box::new(LinearAttention),
        "hyperbolic" => Box::new(HyperbolicAttention::default()),
        "moe" => Box::new(MoeAttention::new(cfg.d, 4, 2, cfg.seed ^ 1)),
        "graph_rope" => Box::new(GraphRope::default()),
        "edge_featured" => Box::new(EdgeFeatured::new(cfg.d, cfg.d_e, cfg.seed ^ 2)),
        "dual_space" => Box::new(DualSpace::default()),
        "local_global" => Box::new(LocalGlobal {
            window: 4,
            global: vec![0],
        }),
        "sparse" => Box::new(BlockSparse::default()),
        "cross" => Box::new(CrossAttention::identity(cfg.d)),
        "neighborhood" => Box::new(Neighborhood::default()),
        "hierarchical" => Box::new(Hierarchical),
        other => return Err(AttnError::Unknown(other.to_string())),
    })
}

/// All registered mechanisms, built once for fixed shapes.
pub struct Registry {
    cfg: RegistryConfig,
    mechs: Vec<Box<dyn Attention + Send + Sync>>,
}

impl Registry {
    /// Builds every mechanism in [`MECHANISMS`].
    pub fn new(cfg: RegistryConfig) -> Result<Self, AttnError> {
        let mechs = MECHANISMS
            .iter()
            .map(|m| build(m.name, cfg))
            .collect::<Result<_, _>>()?;
        Ok(Registry { cfg, mechs })
    }

    pub fn config(&self) -> RegistryConfig {
        self.cfg
    }

    /// Number of registered mechanisms.
    pub fn len(&self) -> usize {
        self.mechs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mechs.is_empty()
    }

    /// Names in catalog order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.mechs.iter().map(|m| m.name())
    }

    /// The mechanism called `name`.
    pub fn get(&self, name: &str) -> Result<&(dyn Attention + Send + Sync), AttnError> {
        self.mechs
            .iter()
            .find(|m| m.name() == name)
            .map(|m| m.as_ref())
            .ok_or_else(|| AttnError::Unknown(name.to_string()))
    }

    /// Runs mechanism `name`.
    pub fn forward(&self, name: &str, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        self.get(name)?.forward(inp, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;
    use crate::attention::{Csr, EdgeFeats, Extras, Positions, ROOT};

    #[test]
    fn registry_lists_fourteen_distinct_mechanisms_that_all_run() {
        let cfg = RegistryConfig {
            d: 8,
            d_v: 4,
            d_e: 2,
            seed: 1,
        };
        let reg = Registry::new(cfg).unwrap();
        assert_eq!(reg.len(), 14);
        assert_eq!(MECHANISMS.len(), 14);
        let names: Vec<_> = reg.names().collect();
        for (a, m) in names.iter().zip(MECHANISMS) {
            assert_eq!(*a, m.name, "instance name must match its catalog entry");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 14);
        // A fully equipped input: path graph, positions, edge features, a two-level tree.
        let n = 6;
        let (q, k, v) = rand_qkv(2, n, n, 8, 4);
        let off = [0u32, 1, 3, 5, 7, 9, 10];
        let tgt = [1u32, 0, 2, 1, 3, 2, 4, 3, 5, 4];
        let pos = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        let mut rng = crate::rng::Rng::new(3);
        let ef = rand_vec(&mut rng, n * n * 2, 1.0);
        let parents = [ROOT, ROOT, 0, 0, 1, 1];
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &off,
                targets: &tgt,
            }),
            edge_feats: Some(EdgeFeats { data: &ef, d_e: 2 }),
            positions: Some(Positions { q: &pos, k: &pos }),
            parents: Some(&parents),
            ..Default::default()
        };
        let inp = AttnInput::new(&q, &k, &v, n, n, 8, 4).with_extras(ex);
        let mut outs: Vec<Vec<f32>> = Vec::new();
        for name in &names {
            let mut out = vec![f32::NAN; n * 4];
            reg.forward(name, &inp, &mut out).unwrap();
            assert!(out.iter().all(|x| x.is_finite()), "{name}");
            outs.push(out);
        }
        // Mechanisms that are not defined to coincide give different outputs.
        assert!(
            max_abs_diff(&outs[0], &outs[3]) > 1e-3,
            "dot_product vs linear"
        );
        assert!(
            max_abs_diff(&outs[0], &outs[2]) < 1e-5,
            "dot_product vs flash"
        );
        assert!(matches!(build("nope", cfg), Err(AttnError::Unknown(_))));
    }

    #[test]
    fn mechanisms_report_missing_extras() {
        let reg = Registry::new(RegistryConfig {
            d: 4,
            d_v: 2,
            d_e: 1,
            seed: 0,
        })
        .unwrap();
        let (q, k, v) = rand_qkv(1, 2, 2, 4, 2);
        let inp = AttnInput::new(&q, &k, &v, 2, 2, 4, 2);
        for m in MECHANISMS {
            let mut out = vec![0.0; 4];
            let r = reg.forward(m.name, &inp, &mut out);
            assert_eq!(r.is_err(), !m.needs.is_empty(), "{}: {r:?}", m.name);
        }
    }
}
