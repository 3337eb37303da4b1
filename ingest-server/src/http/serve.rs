//! Accepting client connections: a cap on open connections, a deadline for a
//! request's headers on a new or idle connection, and a graceful shutdown.
//!
//! `axum::serve` has none of the first two (it runs hyper without a timer), so
//! one client could hold any number of sockets open, or trickle headers forever.
//! This is hyper-util's own server loop with those settings: the header timeout
//! is hyper's (since hyper 1.6 it also runs while a keep-alive connection waits
//! for its next request, so it is the idle timeout too), the cap is a semaphore
//! permit held by each connection's task. At the cap the loop stops accepting:
//! new connections wait in the kernel's accept queue, nothing is refused.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time to receive a request's headers on a new or idle connection.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting
/// and waits for the connections' requests in progress to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: hyper-util's auto-detecting builder reads the first bytes
    // before the header timer starts, so a connection that never sends a byte
    // would hold its slot forever. Clients speak HTTP/1.1 (or HTTP/2 to a proxy).
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, usually: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
