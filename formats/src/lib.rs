//! Object formats: how a rolled set of events becomes one object's bytes, and back.
//!
//! The writer feeds events (enriched JSON objects, exactly as stored) to an
//! [`Encoder`] per open object, and uploads the bytes from [`Encoder::finish`].
//! `decode` reads an object back (compaction, tests, `import` round trips).
//!
//! A crate of its own so that readers of the objects (the end-to-end tests)
//! need not link the whole server.

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

use serde_json::Value;

pub mod ndjson;
pub mod parquet;

/// What went wrong while encoding or decoding an object.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The object's bytes are not a valid object of this format.
    #[error("cannot decode {format} object: {reason}")]
    Decode {
        /// `ndjson` or `parquet`.
        format: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Builds one object from events, in order.
pub trait Encoder: Send {
    /// Appends one event (a JSON object as stored).
    fn push(&mut self, event: &Value) -> Result<(), FormatError>;
    /// Appends one event given as its JSON text (one object, as stored). The writer
    /// calls this; formats that store the text as-is override it to skip a parse.
    fn push_json(&mut self, raw: &[u8]) -> Result<(), FormatError> {
        let event: Value =
            serde_json::from_slice(raw).map_err(|e| FormatError::Encode(e.to_string()))?;
        self.push(&event)
    }
    /// Approximate size of the finished object so far, used to roll at `--roll-bytes`.
    fn approx_bytes(&self) -> u64;
    /// Memory the encoder holds (output so far plus anything buffered), used to
    /// bound the writer's memory across partitions (`--max-buffer-bytes`).
    fn memory_bytes(&self) -> u64 {
        self.approx_bytes()
    }
    /// Events pushed so far.
    fn len(&self) -> usize;
    /// True when no event was pushed.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Finishes the object and returns its bytes.
    fn finish(self: Box<Self>) -> Result<Vec<u8>, FormatError>;
}

/// The object format chosen with `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Gzip-compressed newline-delimited JSON, one event per line (the default).
    Ndjson,
    /// Apache Parquet, envelope fields as columns, nested objects as JSON strings, zstd.
    Parquet,
}

impl Format {
    /// File extension of objects in this format, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson.gz",
            Format::Parquet => "parquet",
        }
    }

    /// The format of an object, from its name.
    pub fn from_path(path: &str) -> Option<Format> {
        if path.ends_with(".ndjson.gz") {
            Some(Format::Ndjson)
        } else if path.ends_with(".parquet") {
            Some(Format::Parquet)
        } else {
            None
        }
    }

    /// A fresh encoder for one object.
    pub fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Format::Ndjson => Box::new(ndjson::NdjsonEncoder::new()),
            Format::Parquet => Box::new(parquet::ParquetEncoder::new()),
        }
    }

    /// Reads every event of an object back, in order.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<Value>, FormatError> {
        match self {
            Format::Ndjson => ndjson::decode(bytes),
            Format::Parquet => parquet::decode(bytes),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ndjson" | "ndjson.gz" => Ok(Format::Ndjson),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format `{other}`; use `ndjson` or `parquet`"
            )),
        }
    }
}
