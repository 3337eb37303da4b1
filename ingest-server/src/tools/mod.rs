//! Offline tools run beside or instead of the server, on the same data
//! directory: `compact` (merge small objects) and `import` (bulk-load NDJSON).

pub mod compact;
pub mod import;
