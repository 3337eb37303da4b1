//! Options of the distributed mode (`--broker`).

use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::parse_size;

/// Options that connect a role to NATS JetStream. Without `--broker` the server
/// runs as one process with its local log.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// NATS servers of the JetStream cluster, e.g. `nats://10.0.0.1:4222,nats://10.0.0.2:4222`.
    /// With it, `serve` is a front-end that publishes to JetStream and `write` is an
    /// object writer that consumes from it; without it, one process does both with its
    /// local log.
    #[arg(long, env = "TRIBUTARY_BROKER", value_name = "URLS")]
    pub broker: Option<String>,
    /// Prefix of every stream and KV bucket this deployment creates, so several
    /// deployments can share one NATS cluster.
    #[arg(
        long,
        env = "TRIBUTARY_BROKER_PREFIX",
        value_name = "NAME",
        default_value = "tributary"
    )]
    pub broker_prefix: String,
    /// Partitions (one JetStream stream each). Read from the broker once the
    /// deployment exists: the first role to start sets it.
    #[arg(
        long,
        env = "TRIBUTARY_PARTITIONS",
        value_name = "N",
        default_value_t = 8
    )]
    pub partitions: u32,
    /// Replicas of every stream and bucket (3 in production: see docs/DEPLOYMENT.md).
    #[arg(
        long,
        env = "TRIBUTARY_REPLICAS",
        value_name = "N",
        default_value_t = 1
    )]
    pub replicas: usize,
    /// How long a writer's hold on a partition lasts without renewal; a dead writer's
    /// partitions move to another writer after about this long.
    #[arg(
        long,
        env = "TRIBUTARY_LEASE",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub lease: String,
    /// Bytes each partition's stream may hold before front-ends answer 503 (writers
    /// behind or down); `unlimited` for no bound.
    #[arg(
        long,
        env = "TRIBUTARY_BROKER_MAX_BYTES",
        value_name = "SIZE",
        default_value = "unlimited"
    )]
    pub broker_max_bytes: String,
    /// How long a front-end waits for JetStream to acknowledge a request's events
    /// before it answers 503.
    #[arg(
        long,
        env = "TRIBUTARY_BROKER_TIMEOUT",
        value_name = "DURATION",
        default_value = "5s"
    )]
    pub broker_timeout: String,
}

/// [`ClusterArgs`], checked.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs.
    pub servers: Vec<String>,
    /// Name prefix of streams and buckets.
    pub prefix: String,
    /// Partitions wanted when the deployment is created.
    pub partitions: u32,
    /// Replicas of streams and buckets.
    pub replicas: usize,
    /// Partition lease.
    pub lease: Duration,
    /// Per-stream byte bound (`None`: unbounded).
    pub max_bytes: Option<u64>,
    /// Publish acknowledgement timeout.
    pub timeout: Duration,
}

impl ClusterArgs {
    /// The checked settings, or `None` without `--broker`.
    pub fn resolve(&self) -> anyhow::Result<Option<ClusterConfig>> {
        let Some(broker) = &self.broker else {
            return Ok(None);
        };
        let servers: Vec<String> = broker
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            bail!("--broker is empty: give one or more nats://HOST:PORT URLs, comma-separated");
        }
        let prefix = &self.broker_prefix;
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("--broker-prefix `{prefix}` must be letters, digits, `-` or `_`");
        }
        if !(1..=1024).contains(&self.partitions) {
            bail!(
                "--partitions {} is out of range: use 1 to 1024",
                self.partitions
            );
        }
        if !matches!(self.replicas, 1..=5) {
            bail!(
                "--replicas {} is out of range: JetStream allows 1 to 5 (3 in production)",
                self.replicas
            );
        }
        let lease = humantime::parse_duration(&self.lease)
            .with_context(|| format!("--lease `{}` is not a duration such as 10s", self.lease))?;
        if lease < Duration::from_secs(1) {
            bail!("--lease must be at least 1s");
        }
        let max_bytes = match self.broker_max_bytes.as_str() {
            "unlimited" => None,
            text => Some(parse_size(text).context("--broker-max-bytes")?),
        };
        let timeout = humantime::parse_duration(&self.broker_timeout).with_context(|| {
            format!(
                "--broker-timeout `{}` is not a duration such as 5s",
                self.broker_timeout
            )
        })?;
        Ok(Some(ClusterConfig {
            servers,
            prefix: prefix.clone(),
            partitions: self.partitions,
            replicas: self.replicas,
            lease,
            max_bytes,
            timeout,
        }))
    }
}
