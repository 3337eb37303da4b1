//! Parquet objects: one column per Segment envelope field, nested objects as JSON text.
//!
//! # Schema
//!
//! Every column is `optional binary (STRING)` (UTF-8), so DuckDB, Trino, Athena, Spark
//! and pyarrow all read it as a plain string column without extensions:
//!
//! | column | holds |
//! | --- | --- |
//! | `type`, `messageId`, `source`, `userId`, `anonymousId`, `event`, `name`, `groupId`, `previousId` | the field, when it is a JSON string |
//! | `timestamp`, `originalTimestamp`, `receivedAt`, `sentAt` | the ISO-8601 text exactly as stored |
//! | `properties`, `traits`, `context`, `integrations` | the value as compact JSON text |
//! | `extra` | a JSON object with every other top-level field (and any envelope field whose value is not a string, e.g. `"userId": 42` or `null`) |
//!
//! Why timestamps stay strings: the stored event keeps the client's own offset and
//! precision in `originalTimestamp`, and `decode` must give back exactly what was stored.
//! Every engine parses ISO-8601 cheaply at query time (`CAST(receivedAt AS TIMESTAMPTZ)`
//! in DuckDB, `from_iso8601_timestamp(receivedAt)` in Trino/Athena), and partition
//! pruning works on the `dt=`/`hour=` path segments anyway.
//!
//! Why JSON columns are STRING rather than the JSON logical type: Hive-derived readers
//! (Athena) do not all accept the JSON annotation, while every engine's JSON functions
//! accept a string (`json_extract_string(properties, '$.plan')` in DuckDB,
//! `json_extract_scalar(properties, '$.plan')` in Trino/Athena).
//!
//! Nothing is lost: a field either lands in its column or in `extra`, so
//! [`decode`] rebuilds an event equal to the one pushed.
//!
//! # Layout
//!
//! Compression is zstd (level 3). Row groups are cut at [`ROW_GROUP_RAW_BYTES`] of
//! buffered values (or [`ROW_GROUP_MAX_ROWS`]), which gives compressed row groups of
//! roughly 8–32 MiB: large enough for efficient scans, small enough to let engines
//! split a 128 MiB object across workers.

use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use serde_json::{Map, Value};

use super::{Encoder, FormatError};

/// Buffered (uncompressed) value bytes at which a row group is written out.
pub const ROW_GROUP_RAW_BYTES: usize = 64 * 1024 * 1024;
/// Rows at which a row group is written out even if it is small in bytes.
pub const ROW_GROUP_MAX_ROWS: usize = 1_000_000;
/// Assumed zstd ratio of buffered JSON-ish text, for [`Encoder::approx_bytes`].
const ASSUMED_RATIO: u64 = 4;

/// How a column's value is taken from, and put back into, an event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A top-level string field, stored as is.
    Text,
    /// A top-level field of any non-null JSON type, stored as JSON text.
    Json,
    /// The object of all remaining top-level fields.
    Extra,
}

/// The columns, in file order.
const COLUMNS: &[(&str, Kind)] = &[
    ("type", Kind::Text),
    ("messageId", Kind::Text),
    ("source", Kind::Text),
    ("timestamp", Kind::Text),
    ("originalTimestamp", Kind::Text),
    ("receivedAt", Kind::Text),
    ("sentAt", Kind::Text),
    ("userId", Kind::Text),
    ("anonymousId", Kind::Text),
    ("event", Kind::Text),
    ("name", Kind::Text),
    ("groupId", Kind::Text),
    ("previousId", Kind::Text),
    ("properties", Kind::Json),
    ("traits", Kind::Json),
    ("context", Kind::Json),
    ("integrations", Kind::Json),
    ("extra", Kind::Extra),
];

/// Index of the `extra` column.
const EXTRA: usize = COLUMNS.len() - 1;

/// Columns whose values are mostly distinct: a dictionary only costs CPU there.
const NO_DICTIONARY: &[&str] = &[
    "messageId",
    "timestamp",
    "originalTimestamp",
    "receivedAt",
    "sentAt",
    "properties",
    "traits",
    "context",
    "extra",
];

/// The Parquet message type for [`COLUMNS`].
fn schema_text() -> String {
    let mut text = String::from("message tributary_event {\n");
    for (name, _) in COLUMNS {
        text.push_str(&format!("  optional binary {name} (STRING);\n"));
    }
    text.push('}');
    text
}

fn encode_err(e: impl std::fmt::Display) -> FormatError {
    FormatError::Encode(format!("parquet: {e}"))
}

fn decode_err(reason: impl std::fmt::Display) -> FormatError {
    FormatError::Decode {
        format: "parquet",
        reason: reason.to_string(),
    }
}

/// Writer properties: zstd, no dictionaries or statistics on high-cardinality text.
fn writer_properties() -> Result<WriterProperties, FormatError> {
    let level = ZstdLevel::try_new(3).map_err(encode_err)?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_created_by(format!(
            "tributary ingest-server {}",
            env!("CARGO_PKG_VERSION")
        ))
        .set_statistics_truncate_length(Some(64));
    for name in NO_DICTIONARY {
        let path = ColumnPath::from(*name);
        builder = builder.set_column_dictionary_enabled(path.clone(), false);
        if matches!(*name, "properties" | "traits" | "context" | "extra") {
            // Min/max of JSON text is useless for pruning and bloats the footer.
            builder = builder.set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    Ok(builder.build())
}

/// Values buffered for one column of the current row group.
#[derive(Default)]
struct ColumnBuffer {
    values: Vec<ByteArray>,
    /// 1 where the row has a value, 0 where it is null.
    def_levels: Vec<i16>,
}

/// Builds one Parquet object from events.
pub struct ParquetEncoder {
    /// Created lazily so that `new` cannot fail (the schema and properties are constant).
    writer: Option<SerializedFileWriter<Vec<u8>>>,
    columns: Vec<ColumnBuffer>,
    buffered_rows: usize,
    buffered_bytes: usize,
    rows: usize,
}

impl ParquetEncoder {
    /// An empty object.
    pub fn new() -> Self {
        Self {
            writer: None,
            columns: COLUMNS.iter().map(|_| ColumnBuffer::default()).collect(),
            buffered_rows: 0,
            buffered_bytes: 0,
            rows: 0,
        }
    }

    fn writer(&mut self) -> Result<&mut SerializedFileWriter<Vec<u8>>, FormatError> {
        if self.writer.is_none() {
            let schema = parse_message_type(&schema_text()).map_err(encode_err)?;
            let writer = SerializedFileWriter::new(
                Vec::new(),
                Arc::new(schema),
                Arc::new(writer_properties()?),
            )
            .map_err(encode_err)?;
            self.writer = Some(writer);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| encode_err("writer missing"))
    }

    /// Writes the buffered rows as one row group.
    fn flush_row_group(&mut self) -> Result<(), FormatError> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let mut buffers = std::mem::take(&mut self.columns);
        self.columns = COLUMNS.iter().map(|_| ColumnBuffer::default()).collect();
        let writer = self.writer()?;
        let mut row_group = writer.next_row_group().map_err(encode_err)?;
        let mut index = 0;
        while let Some(mut column) = row_group.next_column().map_err(encode_err)? {
            let buffer = buffers
                .get_mut(index)
                .ok_or_else(|| encode_err("schema has more columns than buffers"))?;
            column
                .typed::<ByteArrayType>()
                .write_batch(&buffer.values, Some(&buffer.def_levels), None)
                .map_err(encode_err)?;
            column.close().map_err(encode_err)?;
            index += 1;
        }
        row_group.close().map_err(encode_err)?;
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        Ok(())
    }
}

impl Default for ParquetEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits one event into its column values (`None` = null).
fn split(event: &Value) -> Result<Vec<Option<Vec<u8>>>, FormatError> {
    let object = event.as_object().ok_or_else(|| {
        FormatError::Encode(format!(
            "parquet rows are JSON objects, got {}",
            kind_name(event)
        ))
    })?;
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; COLUMNS.len()];
    let mut extra = Map::new();
    for (key, value) in object {
        let column = COLUMNS
            .iter()
            .position(|(name, kind)| *kind != Kind::Extra && name == key);
        match (column, value) {
            (Some(i), Value::String(s)) if COLUMNS[i].1 == Kind::Text => {
                slots[i] = Some(s.as_bytes().to_vec());
            }
            (Some(i), v) if COLUMNS[i].1 == Kind::Json && !v.is_null() => {
                slots[i] = Some(serde_json::to_vec(v).map_err(encode_err)?);
            }
            // Non-string envelope fields, nulls and unknown fields: keep them verbatim.
            _ => {
                extra.insert(key.clone(), value.clone());
            }
        }
    }
    if !extra.is_empty() {
        slots[EXTRA] = Some(serde_json::to_vec(&Value::Object(extra)).map_err(encode_err)?);
    }
    Ok(slots)
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Encoder for ParquetEncoder {
    fn push(&mut self, event: &Value) -> Result<(), FormatError> {
        let slots = split(event)?;
        for (buffer, slot) in self.columns.iter_mut().zip(slots) {
            match slot {
                Some(bytes) => {
                    self.buffered_bytes += bytes.len();
                    buffer.values.push(ByteArray::from(bytes));
                    buffer.def_levels.push(1);
                }
                None => buffer.def_levels.push(0),
            }
        }
        self.buffered_rows += 1;
        self.rows += 1;
        if self.buffered_bytes >= ROW_GROUP_RAW_BYTES || self.buffered_rows >= ROW_GROUP_MAX_ROWS {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn approx_bytes(&self) -> u64 {
        let written = self.writer.as_ref().map_or(0, |w| w.bytes_written()) as u64;
        written + self.buffered_bytes as u64 / ASSUMED_RATIO
    }

    fn memory_bytes(&self) -> u64 {
        // Rows wait uncompressed until their row group is written.
        let written = self.writer.as_ref().map_or(0, |w| w.bytes_written()) as u64;
        written + self.buffered_bytes as u64
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, FormatError> {
        self.flush_row_group()?;
        // An object with no rows is still a valid Parquet file (schema, no row groups).
        self.writer()?;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| encode_err("writer missing"))?;
        writer.into_inner().map_err(encode_err)
    }
}

/// Reads a Parquet object back as JSON events, in order.
///
/// Columns are matched by name, so files with columns in another order (or missing
/// optional columns) decode too; unknown columns are an error rather than silently dropped.
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, FormatError> {
    let reader =
        SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).map_err(decode_err)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut kinds = Vec::with_capacity(schema.num_columns());
    for column in schema.columns() {
        let name = column.name();
        let kind = COLUMNS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| decode_err(format!("unknown column `{name}`")))?;
        kinds.push((name.to_string(), kind));
    }
    let mut events = Vec::new();
    for g in 0..reader.num_row_groups() {
        let row_group = reader.get_row_group(g).map_err(decode_err)?;
        let rows = usize::try_from(row_group.metadata().num_rows())
            .map_err(|_| decode_err("negative row count"))?;
        let mut group: Vec<Map<String, Value>> = vec![Map::new(); rows];
        for (c, (name, kind)) in kinds.iter().enumerate() {
            let column = row_group.get_column_reader(c).map_err(decode_err)?;
            let values = read_column(get_typed_column_reader::<ByteArrayType>(column), rows)
                .map_err(|e| decode_err(format!("column `{name}`: {e}")))?;
            for (row, value) in group.iter_mut().zip(values) {
                let Some(value) = value else { continue };
                put(row, name, *kind, value)?;
            }
        }
        events.extend(group.into_iter().map(Value::Object));
    }
    Ok(events)
}

/// Reads all `rows` values of one column chunk (`None` for nulls).
fn read_column(
    mut reader: parquet::column::reader::ColumnReaderImpl<ByteArrayType>,
    rows: usize,
) -> Result<Vec<Option<ByteArray>>, String> {
    let mut values = Vec::new();
    let mut defs = Vec::new();
    loop {
        let (records, _, _) = reader
            .read_records(rows, Some(&mut defs), None, &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 || defs.len() >= rows {
            break;
        }
    }
    if defs.len() != rows {
        return Err(format!("expected {rows} rows, found {}", defs.len()));
    }
    let mut values = values.into_iter();
    defs.into_iter()
        .map(|d| {
            if d > 0 {
                values
                    .next()
                    .map(Some)
                    .ok_or_else(|| "missing value".into())
            } else {
                Ok(None)
            }
        })
        .collect()
}

/// Puts one column's value back into its row.
fn put(
    row: &mut Map<String, Value>,
    name: &str,
    kind: Kind,
    value: ByteArray,
) -> Result<(), FormatError> {
    let bytes = value.data();
    match kind {
        Kind::Text => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| decode_err(format!("column `{name}` is not UTF-8: {e}")))?;
            row.insert(name.to_string(), Value::String(text.to_string()));
        }
        Kind::Json => {
            let v = serde_json::from_slice(bytes)
                .map_err(|e| decode_err(format!("column `{name}` is not JSON: {e}")))?;
            row.insert(name.to_string(), v);
        }
        Kind::Extra => match serde_json::from_slice(bytes) {
            Ok(Value::Object(extra)) => row.extend(extra),
            Ok(_) => return Err(decode_err("column `extra` is not a JSON object")),
            Err(e) => return Err(decode_err(format!("column `extra` is not JSON: {e}"))),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(events: &[Value]) -> Vec<u8> {
        let mut encoder: Box<dyn Encoder> = Box::new(ParquetEncoder::new());
        for e in events {
            encoder.push(e).unwrap();
        }
        assert_eq!(encoder.len(), events.len());
        encoder.finish().unwrap()
    }

    fn sample(i: usize) -> Value {
        json!({
            "type": "track",
            "messageId": format!("m-{i}"),
            "source": "ios",
            "event": "Order Completed",
            "userId": format!("u{}", i % 7),
            "timestamp": "2026-11-24T10:00:00.123Z",
            "originalTimestamp": "2026-11-24T11:00:00.123+01:00",
            "receivedAt": "2026-11-24T10:00:01.000Z",
            "sentAt": "2026-11-24T10:00:00.900Z",
            "properties": {"revenue": 12.5, "items": [1, 2, {"sku": "x"}], "n": i},
            "context": {"library": {"name": "tributary", "version": "0.1.0"}},
            "integrations": {"All": true},
        })
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let events = vec![
            sample(1),
            json!({"type": "identify", "anonymousId": "a1", "traits": {"email": "x@y.z"},
                   "userId": null, "custom": [1, "two"], "version": 2}),
            json!({"type": "alias", "previousId": "p", "userId": 42, "properties": null}),
            json!({"type": "group", "groupId": "g", "name": "Acme", "context": "not an object"}),
            json!({}),
        ];
        let bytes = encode(&events);
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(decode(&bytes).unwrap(), events);
    }

    #[test]
    fn many_row_groups_round_trip_in_order() {
        // Big properties push past ROW_GROUP_RAW_BYTES, so several row groups are written.
        let blob = "x".repeat(200_000);
        let events: Vec<Value> = (0..400)
            .map(|i| json!({"type": "track", "messageId": format!("m{i}"), "properties": {"b": blob}}))
            .collect();
        let mut encoder = ParquetEncoder::new();
        for e in &events {
            encoder.push(e).unwrap();
        }
        assert!(encoder.approx_bytes() > 0);
        let bytes = Box::new(encoder).finish().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
        assert!(reader.num_row_groups() >= 2, "{}", reader.num_row_groups());
        assert_eq!(decode(&bytes).unwrap(), events);
    }

    #[test]
    fn empty_object_is_valid() {
        let bytes = encode(&[]);
        assert!(decode(&bytes).unwrap().is_empty());
    }

    #[test]
    fn non_object_event_is_refused_with_reason() {
        let err = ParquetEncoder::new().push(&json!([1])).unwrap_err();
        assert!(err.to_string().contains("an array"), "{err}");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = decode(b"not parquet at all").unwrap_err();
        assert!(err.to_string().contains("parquet"), "{err}");
    }

    #[test]
    fn compresses_repetitive_events() {
        let events: Vec<Value> = (0..5000).map(sample).collect();
        let raw: usize = events.iter().map(|e| e.to_string().len()).sum();
        let bytes = encode(&events);
        assert!(bytes.len() * 5 < raw, "{} vs {raw}", bytes.len());
    }
}
