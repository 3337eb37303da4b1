//! Finding the real `ingest-server` binary to run.
//!
//! Order: `TRIBUTARY_INGEST_SERVER_BIN`; then the target directory this
//! executable was built into (`cargo test --workspace` builds the server's
//! binary there, because the server crate has integration tests of its own);
//! then, as a last resort, `cargo build -p ingest-server` into a *separate*
//! target directory. A nested cargo on the same target directory would wait
//! forever for the lock the outer `cargo test` holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static IN_PLACE: AtomicBool = AtomicBool::new(false);

/// Lets the fallback build use this run's own target directory. Only for
/// programs started by `cargo run` (cargo has exec'ed into them and holds no
/// lock); never from a test, where the outer `cargo test` holds the lock.
pub fn allow_in_place_build() {
    IN_PLACE.store(true, Ordering::SeqCst);
}

/// Name of the environment variable that overrides discovery.
pub const SERVER_BIN_ENV: &str = "TRIBUTARY_INGEST_SERVER_BIN";

/// The path of the `ingest-server` executable, found or built once per process.
///
/// Panics with instructions if it can be neither found nor built: tests and
/// the bench cannot do anything useful without the server.
pub fn ingest_server() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match locate() {
        Ok(path) => path,
        Err(why) => panic!(
            "cannot find the ingest-server binary: {why}. Build it with `cargo build -p ingest-server` \
             (same profile as this run) or set {SERVER_BIN_ENV}=/path/to/ingest-server"
        ),
    })
    .clone()
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(SERVER_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{SERVER_BIN_ENV}={} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/deps/<test-binary> or target/<profile>/<bin>
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("ingest-server");
        if candidate.is_file() && is_fresh(&candidate) {
            return Ok(candidate);
        }
    }
    build_separately(&exe)
}

/// A binary older than the server's sources is stale (for example after
/// `cargo test -p tests` alone, which does not rebuild it).
fn is_fresh(bin: &Path) -> bool {
    let Ok(bin_time) = bin.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest-server/src");
    newest_mtime(&src).is_none_or(|src_time| src_time <= bin_time)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().ok().and_then(|m| m.modified().ok())
        };
        newest = newest.max(time);
    }
    newest
}

fn build_separately(exe: &Path) -> Result<PathBuf, String> {
    let release = exe.ancestors().any(|a| a.ends_with("release"));
    let target_root = exe
        .ancestors()
        .find(|a| a.ends_with("debug") || a.ends_with("release"))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("tributary-e2e-target"));
    let nested = if IN_PLACE.load(Ordering::SeqCst) {
        target_root
    } else {
        target_root.join("e2e-nested")
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "e2e: ingest-server binary missing or stale; building it into {}",
        nested.display()
    );
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "ingest-server", "--bin", "ingest-server"])
        .env("CARGO_TARGET_DIR", &nested)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p ingest-server failed: {status}"));
    }
    let path = nested
        .join(if release { "release" } else { "debug" })
        .join("ingest-server");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} not found after the build", path.display()))
    }
}
