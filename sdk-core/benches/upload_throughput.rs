//! Upload throughput to a local collector, in events per second, and bytes on
//! the wire per event (gzip) for a typical ~300-byte event.
//!
//! Run: `cargo bench -p sdk-core --bench upload_throughput`
//!
//! A backlog is made durable offline, then the network is switched on and the
//! clock runs until `flush_blocking` returns `Delivered`. The collector is the
//! tests' scripted loopback server (hyper), which gunzips and parses every
//! body, so its own work is included. Batches use the default limits
//! (500 events, 500 KB before gzip).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use tributary::{Client, FlushResult};

const EVENTS: u64 = 50_000;

/// Properties that vary like real ones (a random id per event), so gzip gets
/// no more help than it would in an app.
fn properties(seq: u64) -> String {
    // With the SDK's context, ids and timestamp this makes a ~300-byte event.
    format!(r#"{{"seq":{seq},"order_id":"{:016x}"}}"#, fastrand::u64(..))
}

fn main() {
    let server = support::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = support::test_config(&server.url(), dir.path());
    cfg.max_batch_events = 500;
    cfg.max_batch_bytes = 500_000;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    // In chunks smaller than the writer's channel, so none is dropped.
    for i in 0..EVENTS {
        client
            .track("Product Viewed".into(), properties(i))
            .unwrap();
        if i % 5_000 == 4_999 {
            client.flush_blocking(120_000);
        }
    }
    let result = client.flush_blocking(120_000);
    assert_eq!(result, FlushResult::Offline { pending: EVENTS });

    let start = Instant::now();
    client.set_network_available(true);
    let result = client.flush_blocking(300_000);
    let elapsed = start.elapsed();
    assert_eq!(result, FlushResult::Delivered);

    let reqs = server.requests();
    let events: usize = reqs.iter().map(|r| r.events().len()).sum();
    assert_eq!(events as u64, EVENTS, "every event sent once");
    let wire: usize = reqs.iter().map(|r| r.wire_bytes).sum();
    // Request line and headers as sent (HTTP/1.1 text), to show their share.
    let head: usize = reqs
        .iter()
        .map(|r| {
            let line = r.method.len() + r.path.len() + 12;
            let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            line + headers + 2
        })
        .sum();
    let json: usize = reqs
        .iter()
        .filter_map(|r| r.body.as_ref())
        .map(|b| b.to_string().len())
        .sum();
    let event_json: usize = reqs
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e.to_string().len())
        .sum();
    println!(
        "upload_throughput: {EVENTS} events in {} requests, {:.3}s = {:.0} events/s",
        reqs.len(),
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "upload_throughput: {:.0} bytes/event as JSON ({:.0} bytes/event of batch JSON), \
         {:.1} bytes/event on the wire gzipped (request bodies; ratio {:.2})",
        event_json as f64 / EVENTS as f64,
        json as f64 / EVENTS as f64,
        wire as f64 / EVENTS as f64,
        wire as f64 / json as f64
    );
    println!(
        "upload_throughput: {:.1} bytes/event on the wire including request headers ({:.0} header bytes per request)",
        (wire + head) as f64 / EVENTS as f64,
        head as f64 / reqs.len() as f64
    );
    client.shutdown(1_000);
}
