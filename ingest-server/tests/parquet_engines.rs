//! Parquet objects written by the encoder are read by real engines from PyPI:
//! DuckDB (SQL over the columns, JSON functions on `properties`) and pyarrow.

mod s3_common;

use std::process::Command;

use ingest_server::format::Format;
use serde_json::json;

fn write_sample(path: &std::path::Path, rows: usize) {
    let mut encoder = Format::Parquet.encoder();
    for i in 0..rows {
        let mut event = json!({
            "type": if i % 2 == 0 { "track" } else { "identify" },
            "messageId": format!("m-{i}"),
            "source": "ios",
            "userId": format!("u{}", i % 10),
            "timestamp": "2026-11-24T10:00:00.123Z",
            "receivedAt": "2026-11-24T10:00:01.000Z",
            "properties": {"revenue": i, "plan": "pro"},
            "context": {"app": {"version": "1.2.3"}},
            "custom": i,
        });
        if i % 2 == 0 {
            event["event"] = json!("Order Completed");
        }
        encoder.push(&event).unwrap();
    }
    std::fs::write(path, encoder.finish().unwrap()).unwrap();
}

fn python(venv: &std::path::Path, script: &str) -> String {
    let out = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_string()
}

#[test]
fn duckdb_reads_columns_and_json() {
    let Some(venv) = s3_common::venv("parquet_engines::duckdb") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.parquet");
    write_sample(&file, 1000);
    let script = format!(
        r#"
import duckdb
con = duckdb.connect()
f = {file:?}
print(con.sql(f"select count(*), count(distinct messageId), count(event), sum(json_extract(properties, '$.revenue')::BIGINT), min(CAST(receivedAt AS TIMESTAMPTZ)) is not null, max(json_extract(extra, '$.custom')::BIGINT) from read_parquet('{{f}}') where source = 'ios'").fetchall())
print(con.sql(f"select column_name, column_type from (describe select * from read_parquet('{{f}}')) where column_name in ('messageId', 'properties')").fetchall())
"#,
        file = file.display().to_string()
    );
    let out = python(&venv, &script);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "[(1000, 1000, 500, 499500, True, 999)]",
        "{out}"
    );
    let types = lines.next().unwrap();
    assert!(types.contains("('messageId', 'VARCHAR')"), "{types}");
    assert!(types.contains("('properties', 'VARCHAR')"), "{types}");
}

#[test]
fn pyarrow_reads_schema_and_rows() {
    let Some(venv) = s3_common::venv("parquet_engines::pyarrow") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.parquet");
    write_sample(&file, 300);
    let script = format!(
        r#"
import json, pyarrow.parquet as pq
t = pq.read_table({file:?})
md = pq.ParquetFile({file:?}).metadata
print(t.num_rows, t.schema.field('userId').type, md.row_group(0).column(0).compression)
print(json.loads(t.column('properties')[7].as_py())['revenue'], t.column('event')[1].as_py())
"#,
        file = file.display().to_string()
    );
    let out = python(&venv, &script);
    assert_eq!(out, "300 string ZSTD\n7 None", "{out}");
}
