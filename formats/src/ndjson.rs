//! NDJSON.gz: one event per line, exactly as stored, gzip-compressed.
//!
//! The encoder compresses as events arrive (fast level: the writer must keep up
//! with the front-end), so memory per open object is its compressed size, and
//! [`Encoder::approx_bytes`] is the object's real size so far.

use std::io::{BufRead, BufReader, Write};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde_json::Value;

use super::{Encoder, FormatError};

/// Gzip level of NDJSON objects. With the zlib-rs backend, level 1 (`deflate_quick`)
/// made objects ~27% larger than level 2 for ~1 us/event less writer CPU; level 2
/// keeps objects as small as miniz_oxide's level 1 did, at a lower CPU cost.
const GZIP_LEVEL: u32 = 2;

/// Streams events into a gzip NDJSON object.
pub struct NdjsonEncoder {
    gz: GzEncoder<Vec<u8>>,
    count: usize,
    raw_bytes: u64,
}

impl NdjsonEncoder {
    /// An empty object.
    pub fn new() -> Self {
        Self {
            gz: GzEncoder::new(Vec::new(), Compression::new(GZIP_LEVEL)),
            count: 0,
            raw_bytes: 0,
        }
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), FormatError> {
        self.gz
            .write_all(raw)
            .and_then(|()| self.gz.write_all(b"\n"))
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        self.count += 1;
        self.raw_bytes += raw.len() as u64 + 1;
        Ok(())
    }
}

impl Default for NdjsonEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for NdjsonEncoder {
    fn push(&mut self, event: &Value) -> Result<(), FormatError> {
        let raw = serde_json::to_vec(event).map_err(|e| FormatError::Encode(e.to_string()))?;
        self.line(&raw)
    }

    fn push_json(&mut self, raw: &[u8]) -> Result<(), FormatError> {
        // The log holds compact JSON without newlines: store it byte for byte.
        if raw.contains(&b'\n') {
            let v: Value =
                serde_json::from_slice(raw).map_err(|e| FormatError::Encode(e.to_string()))?;
            return self.push(&v);
        }
        self.line(raw)
    }

    fn approx_bytes(&self) -> u64 {
        // Compressed bytes so far, plus what the compressor still holds (~ raw/8).
        self.gz.get_ref().len() as u64 + 64
    }

    fn len(&self) -> usize {
        self.count
    }

    fn finish(self: Box<Self>) -> Result<Vec<u8>, FormatError> {
        self.gz
            .finish()
            .map_err(|e| FormatError::Encode(e.to_string()))
    }
}

/// Reads an NDJSON.gz object back (blank lines are skipped).
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, FormatError> {
    let reader = BufReader::new(MultiGzDecoder::new(bytes));
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| FormatError::Decode {
            format: "ndjson",
            reason: format!("line {}: {e}", n + 1),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|e| FormatError::Decode {
            format: "ndjson",
            reason: format!("line {}: {e}", n + 1),
        })?;
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut e: Box<dyn Encoder> = Box::new(NdjsonEncoder::new());
        e.push(&serde_json::json!({"a": 1})).unwrap();
        e.push_json(br#"{"b":"x"}"#).unwrap();
        assert_eq!(e.len(), 2);
        let bytes = e.finish().unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(
            back,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": "x"})]
        );
        assert!(decode(b"not gzip").is_err());
    }
}
