//! A scenario's rig: a temporary directory, the real server, the fault proxy
//! in front of it, and a watchdog that bounds the scenario's time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::FaultProxy;
use crate::server::{Server, ServerOptions};
use crate::storage::{StoredObject, read_objects};

/// Server, proxy and scratch space for one scenario.
pub struct Rig {
    /// Scratch space; removed on drop.
    pub tmp: tempfile::TempDir,
    /// The real ingest server.
    pub server: Server,
    /// The fault proxy; clients use [`Rig::endpoint`].
    pub proxy: FaultProxy,
    /// `ndjson` or `parquet`.
    pub format: String,
    done: Arc<AtomicBool>,
}

impl Rig {
    /// Starts the server (with `options`) and the proxy. The scenario must end
    /// within `budget`, or the watchdog kills the server and fails the run,
    /// so a hung scenario can never hang CI.
    pub fn start(name: &str, options: ServerOptions, budget: Duration) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("tributary-e2e-{name}-"))
            .tempdir()
            .expect("tempdir");
        let format = options.format.clone();
        let server = Server::start(&tmp.path().join("data"), options);
        let proxy = FaultProxy::start(server.addr());
        let done = Arc::new(AtomicBool::new(false));
        spawn_watchdog(name.to_string(), budget, done.clone(), server.pid());
        crate::note(&format!(
            "{name}: server {} ({format}) behind proxy {}, data in {}",
            server.url(),
            proxy.url(),
            tmp.path().display()
        ));
        Self {
            tmp,
            server,
            proxy,
            format,
            done,
        }
    }

    /// The URL clients should use (the proxy).
    pub fn endpoint(&self) -> String {
        self.proxy.url()
    }

    /// A directory for device storage.
    pub fn devices_root(&self) -> PathBuf {
        let dir = self.tmp.path().join("devices");
        std::fs::create_dir_all(&dir).expect("devices dir");
        dir
    }

    /// SIGKILLs the server, starts it again on the same data, re-points the proxy.
    pub fn crash_and_restart_server(&mut self) {
        self.server.kill();
        self.server.restart();
        self.proxy.set_upstream(self.server.addr());
    }

    /// Stops the server gracefully (it rolls its buffers) and reads every object.
    pub fn finish(&mut self) -> (Vec<StoredObject>, Vec<Value>) {
        self.server.stop_gracefully();
        let objects = read_objects(&self.server.objects_dir());
        let events = crate::storage::all_events(&objects);
        crate::note(&format!(
            "read {} objects holding {} events",
            objects.len(),
            events.len()
        ));
        (objects, events)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

fn spawn_watchdog(name: String, budget: Duration, done: Arc<AtomicBool>, server_pid: Option<u32>) {
    let deadline = Instant::now() + budget;
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            if done.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("e2e watchdog: scenario `{name}` exceeded its {budget:?} budget; aborting");
        let _ = server_pid;
        crate::server::kill_all_children();
        std::process::exit(101);
    });
}
