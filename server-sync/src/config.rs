//! Command line and environment configuration (clap, every flag also an env var).

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sona-sync",
    about = "SONA sync server: federated LoRA aggregation and adapter storage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a bearer token for one user (or an admin token), signed with the store's secret.
    IssueToken {
        #[arg(long)]
        user: String,
        #[arg(long)]
        admin: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        ttl_secs: i64,
    },
    /// Load test a running server on loopback: concurrent uploads, updates/s and latency percentiles.
    BenchLoad(BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Admin token (to mint one user token per client).
    #[arg(long, env = "SONA_ADMIN_TOKEN")]
    pub admin_token: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    #[arg(
        long,
        global = true,
        env = "SONA_SYNC_LISTEN",
        default_value = "127.0.0.1:8787"
    )]
    pub listen: SocketAddr,
    /// Also serve the gRPC services on this address (e.g. 127.0.0.1:8788).
    #[arg(long, global = true, env = "SONA_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// `sqlite://PATH` (embedded, default) or `postgres://user@host/db`.
    #[arg(
        long,
        global = true,
        env = "SONA_STORE_URL",
        default_value = "sqlite://sona-sync.db"
    )]
    pub store_url: String,
    /// Optional Redis hot cache for per-user adapters, e.g. `redis://127.0.0.1:6379`.
    #[arg(long, global = true, env = "SONA_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix for table and Redis key names (letters, digits, _).
    #[arg(long, global = true, env = "SONA_TABLE_PREFIX", default_value = "")]
    pub table_prefix: String,
    /// Token signing secret; when absent a random one is created once and kept in the store.
    #[arg(long, global = true, env = "SONA_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, global = true, env = "SONA_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Seconds between automatic aggregation rounds (0: only on POST /v1/admin/round).
    #[arg(
        long,
        global = true,
        env = "SONA_ROUND_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub round_interval_secs: u64,
    /// Most distinct users aggregated in one round (bounds memory: n × d² floats).
    #[arg(
        long,
        global = true,
        env = "SONA_ROUND_MAX_USERS",
        default_value_t = 128
    )]
    pub round_max_users: usize,
    /// Seconds between the ReasoningBank's daily maintenance runs (decay,
    /// prune, merge on every segment; 0 = only on the admin trigger).
    #[arg(
        long,
        global = true,
        env = "SONA_BANK_MAINTAIN_INTERVAL_SECS",
        default_value_t = 86_400
    )]
    pub bank_maintain_interval_secs: u64,
    /// Seconds between global (cross-segment) aggregations of the
    /// ReasoningBank (0 = only on the admin trigger).
    #[arg(
        long,
        global = true,
        env = "SONA_BANK_AGGREGATE_INTERVAL_SECS",
        default_value_t = 604_800
    )]
    pub bank_aggregate_interval_secs: u64,
    /// Most ReasoningBank segments (each is one bank in memory).
    #[arg(
        long,
        global = true,
        env = "SONA_BANK_MAX_SEGMENTS",
        default_value_t = 1024
    )]
    pub bank_max_segments: usize,
    /// Router model file for /v1/router/route (a `sona` router model).
    #[arg(long, global = true, env = "SONA_ROUTER_MODEL")]
    pub router_model: Option<std::path::PathBuf>,
    /// Adapter shape (must match the devices).
    #[arg(long, global = true, env = "SONA_DIM", default_value_t = 384)]
    pub dim: usize,
    #[arg(long, global = true, env = "SONA_RANK", default_value_t = 8)]
    pub rank: usize,
    #[arg(long, global = true, env = "SONA_ALPHA", default_value_t = 16.0)]
    pub alpha: f32,
}
