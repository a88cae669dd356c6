//! `sona-sync`: parse config → open store (migrates) → serve.

use anyhow::Context;
use clap::Parser;
use sona_sync::auth::{Auth, Role};
use sona_sync::config::{Cli, Command};
use sona_sync::server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => {
            let state = server::build_state(&cli.serve)
                .await
                .context("starting the server")?;
            let listener = tokio::net::TcpListener::bind(cli.serve.listen)
                .await
                .with_context(|| format!("binding {}", cli.serve.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, store = state.store.backend(), global_version = state.sync.version(), "sona-sync listening");
            // Machine-readable first line for scripts and tests.
            println!("listening on {addr}");
            server::serve(listener, state, &cli.serve, server::shutdown_signal()).await?;
        }
        Some(Command::IssueToken {
            user,
            admin,
            ttl_secs,
        }) => {
            anyhow::ensure!(
                !user.starts_with(sona_sync::http::bank::RESERVED_PREFIX),
                "user ids starting with __sona__ are reserved"
            );
            let store =
                sona_sync::store::open(&cli.serve.store_url, &cli.serve.table_prefix, None).await?;
            let secret = server::token_secret(&cli.serve, store.as_ref()).await?;
            store.close().await;
            let role = if admin { Role::Admin } else { Role::User };
            let expires = sona_sync::http::now_secs() + ttl_secs;
            println!(
                "{}",
                Auth::new(secret.as_bytes()).issue(role, &user, expires)
            );
        }
        Some(Command::BenchLoad(args)) => {
            let r = sona_sync::bench::run(&args)
                .await
                .map_err(anyhow::Error::msg)?;
            println!(
                "bench-load: {} acknowledged updates in {:.1} s = {:.0} updates/s; p50 {:.2} ms, p99 {:.2} ms; {} errors; concurrency {}; update size {} bytes",
                r.updates,
                r.seconds,
                r.updates as f64 / r.seconds,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                args.concurrency,
                r.update_bytes
            );
        }
    }
    Ok(())
}
