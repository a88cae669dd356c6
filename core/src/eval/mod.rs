//! Offline evaluation: ranking metrics ([`metrics`]) and the static, streaming and
//! cold-start protocols ([`protocol`]).
pub mod metrics;
pub mod protocol;

pub use crate::recommend::OnlineRecommender;
pub use metrics::{user_metrics, Accumulator, Summary, UserMetrics};
pub use protocol::{
    eval_static, replay, replay_record, score_recorded, static_split, temporal_split, EvalError,
    RecordedEvent, ReplayReport, Split,
};
