//! `ingest-server`: serve (default), `compact`, `import`.

use clap::{Parser, Subcommand};
use ingest_server::cluster::ClusterArgs;
use ingest_server::config::ServerCli;
use ingest_server::server;
use ingest_server::tools::{compact, import};

/// mimalloc instead of glibc malloc: the server allocates per event (JSON values,
/// log records) on several threads, where glibc's arenas cost ~15% of the CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tributary ingest server: Segment-compatible HTTP API, durable before ack,
/// exactly-once to partitioned objects (local disk or S3).
///
/// Every option can also be set with its TRIBUTARY_* environment variable or in
/// the TOML file given with --config (flag names as keys).
#[derive(Debug, Parser)]
#[command(name = "ingest-server", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServerCli,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// A role's options: the server's, and the broker's.
#[derive(Debug, clap::Args)]
struct RoleArgs {
    #[command(flatten)]
    serve: ServerCli,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The HTTP front-end (the default command): with --broker, it publishes to
    /// NATS JetStream; without, one process also writes the objects.
    Serve(RoleArgs),
    /// An object writer of the distributed mode: consumes partitions from NATS
    /// JetStream (--broker is required) and writes their objects. Serves /health,
    /// /ready and /metrics on --listen.
    Write(RoleArgs),
    /// Merge the small objects of partitions into target-sized ones, atomically.
    Compact(compact::Args),
    /// Bulk-load NDJSON files (re-runnable: dedupe by messageId makes it idempotent).
    Import(import::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli: Cli = ingest_server::config::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Some(Command::Compact(args)) => compact::run(args).await,
            Some(Command::Import(args)) => import::run(args).await,
            Some(Command::Serve(a)) => server::run(a.serve.resolve()?, a.cluster.resolve()?).await,
            Some(Command::Write(a)) => {
                let cluster = a.cluster.resolve()?.ok_or_else(|| {
                    anyhow::anyhow!("`write` needs --broker nats://HOST:PORT (the JetStream cluster to consume from)")
                })?;
                ingest_server::cluster::writer::run(a.serve.resolve()?, cluster).await
            }
            None => server::run(cli.serve.resolve()?, cli.cluster.resolve()?).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
