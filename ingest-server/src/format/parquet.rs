//! Parquet objects. (Stub; the server-formats helper implements it.)

use serde_json::Value;

use super::{Encoder, FormatError};

/// Builds one Parquet object from events.
pub struct ParquetEncoder {
    rows: Vec<Value>,
}

impl ParquetEncoder {
    /// An empty object.
    pub fn new() -> Self {
        Self { rows: Vec::new() }
    }
}

impl Default for ParquetEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for ParquetEncoder {
    fn push(&mut self, event: &Value) -> Result<(), FormatError> {
        self.rows.push(event.clone());
        Ok(())
    }
    fn approx_bytes(&self) -> u64 {
        0
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>, FormatError> {
        Err(FormatError::Encode("parquet not implemented yet".into()))
    }
}

/// Reads a Parquet object back as JSON events.
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, FormatError> {
    let _ = bytes;
    Err(FormatError::Decode {
        format: "parquet",
        reason: "not implemented yet".into(),
    })
}
