//! Synthetic pattern data shared by `examples/bank_scale.rs` and `benches/bank.rs`
//! (included with `#[path]`; not an example itself).

#![allow(dead_code)]

use sona_core::bank::{DeviceType, Mood, MoodSet, NewPattern, PatternContext, TimeOfDay};
use sona_core::rng::Rng;

/// How query embeddings are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Data {
    /// Hierarchical mixture of Gaussians on the sphere, like real query
    /// embeddings (intents grouped in topics): `clusters / 20` random unit topic
    /// directions; each cluster centre = normalize(topic + N(0, I/d)) (cosine to
    /// its topic ≈ 0.7); each point = normalize(centre + `spread` · N(0, I/d)).
    /// With `spread` 1.0: same cluster ≈ 0.5 cosine, same topic ≈ 0.25,
    /// unrelated ≈ 0.
    Clustered { clusters: usize, spread: f32 },
    /// Uniform on the sphere (the hard case for any graph index).
    Uniform,
}

pub struct Generator {
    dim: usize,
    centres: Vec<Vec<f32>>,
    data: Data,
    rng: Rng,
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

impl Generator {
    pub fn new(dim: usize, data: Data, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centres = match data {
            Data::Clustered { clusters, .. } => {
                let topics: Vec<Vec<f32>> = (0..clusters.div_ceil(20))
                    .map(|_| {
                        let mut t: Vec<f32> = (0..dim).map(|_| rng.normal()).collect();
                        normalize(&mut t);
                        t
                    })
                    .collect();
                let s = 1.0 / (dim as f32).sqrt();
                (0..clusters)
                    .map(|k| {
                        let t = &topics[k / 20];
                        let mut c: Vec<f32> = (0..dim).map(|i| t[i] + s * rng.normal()).collect();
                        normalize(&mut c);
                        c
                    })
                    .collect()
            }
            Data::Uniform => Vec::new(),
        };
        Generator {
            dim,
            centres,
            data,
            rng,
        }
    }

    /// One unit embedding.
    pub fn embedding(&mut self) -> Vec<f32> {
        let d = self.dim;
        let mut v: Vec<f32> = match self.data {
            Data::Clustered { spread, .. } => {
                let c = self.rng.below(self.centres.len());
                let s = spread / (d as f32).sqrt();
                (0..d)
                    .map(|i| self.centres[c][i] + s * self.rng.normal())
                    .collect()
            }
            Data::Uniform => (0..d).map(|_| self.rng.normal()).collect(),
        };
        normalize(&mut v);
        v
    }

    /// One pattern with 5 results and a random context.
    pub fn pattern(&mut self) -> NewPattern {
        let e = self.embedding();
        let r = &mut self.rng;
        let results = (0..5).map(|_| r.below(50_000) as u64).collect();
        let tod = [
            TimeOfDay::Morning,
            TimeOfDay::Afternoon,
            TimeOfDay::Evening,
            TimeOfDay::Night,
        ];
        let dev = [DeviceType::Tv, DeviceType::Mobile, DeviceType::Tablet];
        NewPattern {
            query_embedding: e,
            successful_results: results,
            user: Some(r.below(10_000) as u64),
            segment: Some(r.below(8) as u32),
            context: PatternContext {
                time_of_day: Some(*r.pick(&tod)),
                day_of_week: None,
                device: Some(*r.pick(&dev)),
                session_minutes: Some(r.uniform(5.0, 120.0)),
                moods: MoodSet::of(&[*r.pick(&Mood::ALL)]),
            },
            confidence: r.uniform(0.3, 1.0),
            usage_count: r.below(20) as u32,
        }
    }
}
