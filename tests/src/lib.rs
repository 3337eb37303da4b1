//! End-to-end support code for Tributary: the real ingest server as a child
//! process, a fault-injecting proxy, simulated devices (in-process SDK
//! clients, or `device` child processes that can be SIGKILLed), and the
//! storage check that every recorded event is stored exactly once.

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod binaries;
pub mod devproc;
pub mod http;
pub mod proxy;
pub mod rig;
pub mod server;
pub mod sim;
pub mod storage;

/// Best-effort log line for scenarios: time since the process started, then the message.
pub fn note(message: &str) {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[e2e +{:>7.2}s] {message}", start.elapsed().as_secs_f64());
}
