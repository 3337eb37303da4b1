//! A simulated device in its own process, so tests can SIGKILL it mid-upload
//! and start it again on the same storage.
//!
//! `device --storage DIR --endpoint URL --device ID --start SEQ --count N
//!  [--chunk K] [--pace-ms MS] [--drain-ms MS] [--write-key KEY]`
//!
//! It records events `start..start+count` in chunks of K. Before each chunk it
//! prints `tracking FROM TO`; once `flush_blocking` confirms the chunk durable
//! it prints `durable FROM TO`. At the end it flushes until delivered (or
//! `--drain-ms` passes), prints `result <FlushResult>` and `stats <Stats>`,
//! shuts down and exits 0. Every line is flushed at once, so a kill loses none.

use std::io::Write;
use std::time::{Duration, Instant};

use tributary::{Client, FlushResult};

/// How long `flush_blocking` may take to confirm a chunk. The durable commit
/// takes milliseconds; the rest of the wait is delivery, which we do not need.
const CONFIRM_TIMEOUT_MS: u64 = 2_000;

/// One simulated device in its own process, so tests can SIGKILL it.
#[derive(clap::Parser)]
struct Args {
    /// The device's storage directory.
    #[arg(long)]
    storage: String,
    /// The collector's base URL.
    #[arg(long)]
    endpoint: String,
    /// The source's write key.
    #[arg(long, default_value = tests::server::WRITE_KEY)]
    write_key: String,
    /// The device's name, carried in every event.
    #[arg(long)]
    device: String,
    /// First sequence number to record.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// How many events to record.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Events per durable confirmation.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    chunk: u64,
    /// Pause between chunks.
    #[arg(long, default_value_t = 0)]
    pace_ms: u64,
    /// How long to keep delivering after recording.
    #[arg(long, default_value_t = 30_000)]
    drain_ms: u64,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let mut config = tests::sim::test_config(&args.endpoint, std::path::Path::new(&args.storage));
    config.write_key = args.write_key.clone();
    let client = match Client::new(config, None) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("device: Client::new: {e}");
            std::process::exit(1);
        }
    };
    say("ready");
    let end = args.start + args.count;
    let mut from = args.start;
    while from < end {
        let to = (from + args.chunk).min(end);
        say(&format!("tracking {from} {to}"));
        for seq in from..to {
            if let Err(e) = client.track(
                "E2E Event".into(),
                tests::sim::properties_json(&args.device, seq),
            ) {
                eprintln!("device: track: {e}");
                std::process::exit(1);
            }
        }
        // Every outcome implies durability per the FlushResult docs, but the SDK
        // currently bounds its wait for the durable commit by the same timeout
        // (see /work/notes/e2e-bugs.md): give it far longer than a group commit takes.
        let result = client.flush_blocking(CONFIRM_TIMEOUT_MS);
        if result == FlushResult::Disabled {
            eprintln!("device: client disabled");
            std::process::exit(1);
        }
        say(&format!("durable {from} {to}"));
        from = to;
        if args.pace_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.pace_ms));
        }
    }
    let deadline = Instant::now() + Duration::from_millis(args.drain_ms);
    let mut result = client.flush_blocking(1);
    while result != FlushResult::Delivered && Instant::now() < deadline {
        result = client.flush_blocking(1_000);
    }
    say(&format!("result {result:?}"));
    say(&format!("stats {:?}", client.stats()));
    client.shutdown(2_000);
    say("exit");
}
