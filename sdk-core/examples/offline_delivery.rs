//! Records events while offline, then goes online and delivers them.
//!
//! ```text
//! cargo run -p sdk-core --example offline_delivery -- http://127.0.0.1:8080 WRITE_KEY [EVENTS] [STORAGE_DIR]
//! ```
//!
//! Prints the stats after recording (everything queued on disk) and after
//! delivery. Exits non-zero if the events could not be delivered in 30 s.

use std::process::ExitCode;
use std::sync::Arc;

use tributary::{Client, Config, DeviceContext, FlushResult, LogLevel, Logger};

/// Prints the SDK's log lines to stderr.
struct StderrLogger;

impl Logger for StderrLogger {
    fn log(&self, level: LogLevel, message: String) {
        if level >= LogLevel::Info {
            eprintln!("[tributary {level:?}] {message}");
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(endpoint), Some(write_key)) = (args.first(), args.get(1)) else {
        eprintln!("usage: offline_delivery ENDPOINT_URL WRITE_KEY [EVENTS=100] [STORAGE_DIR]");
        return ExitCode::from(2);
    };
    let events: u64 = match args.get(2).map(|s| s.parse()) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("EVENTS must be a number: {e}");
            return ExitCode::from(2);
        }
    };
    let storage_dir = args.get(3).cloned().unwrap_or_else(|| {
        std::env::temp_dir()
            .join(format!("tributary-example-{}", std::process::id()))
            .display()
            .to_string()
    });
    match run(endpoint, write_key, events, &storage_dir) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    endpoint: &str,
    write_key: &str,
    events: u64,
    storage_dir: &str,
) -> Result<bool, tributary::TributaryError> {
    let mut config = Config::new(endpoint.into(), write_key.into(), storage_dir.into());
    config.library_name = "tributary-example".into();
    let client = Client::new(config, Some(Arc::new(StderrLogger)))?;
    client.set_context(DeviceContext {
        app_name: Some("offline_delivery".into()),
        os_name: Some(std::env::consts::OS.into()),
        ..Default::default()
    });

    println!("storage: {storage_dir}");
    println!("offline: recording {events} events");
    client.set_network_available(false);
    client.identify("user-42".into(), r#"{"plan":"pro"}"#.into())?;
    for i in 0..events {
        client.track(
            "Item Viewed".into(),
            format!(r#"{{"item":{i},"price":9.99,"currency":"EUR"}}"#),
        )?;
    }
    client.screen("Home".into(), String::new())?;
    let offline = client.flush_blocking(10_000);
    println!("  flush while offline: {offline:?}");
    println!("  stats: {:#?}", client.stats());

    println!("online: delivering to {endpoint}/v1/batch");
    client.set_network_available(true);
    let result = client.flush_blocking(30_000);
    println!("  flush: {result:?}");
    let final_result = client.shutdown(5_000);
    let stats = client.stats();
    println!("  stats: {stats:#?}");
    println!(
        "delivered {} events, {} still queued, shutdown: {final_result:?}",
        stats.uploaded_events, stats.queued_events
    );
    Ok(result == FlushResult::Delivered)
}
