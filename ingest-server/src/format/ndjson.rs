//! NDJSON.gz: one event per line, gzip-compressed. (Stub; the server-core helper implements it.)

use serde_json::Value;

use super::{Encoder, FormatError};

/// Streams events into a gzip NDJSON object.
pub struct NdjsonEncoder {
    lines: Vec<u8>,
    count: usize,
}

impl NdjsonEncoder {
    /// An empty object.
    pub fn new() -> Self {
        Self {
            lines: Vec::new(),
            count: 0,
        }
    }
}

impl Default for NdjsonEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for NdjsonEncoder {
    fn push(&mut self, event: &Value) -> Result<(), FormatError> {
        serde_json::to_writer(&mut self.lines, event)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        self.lines.push(b'\n');
        self.count += 1;
        Ok(())
    }
    fn approx_bytes(&self) -> u64 {
        self.lines.len() as u64
    }
    fn len(&self) -> usize {
        self.count
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>, FormatError> {
        Ok(self.lines)
    }
}

/// Reads an NDJSON.gz object back.
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, FormatError> {
    let _ = bytes;
    Ok(Vec::new())
}
