//! The Arrow schema of the pulls table, and the builder that turns enriched
//! actions into record batches of it.
//!
//! `schemas/table.json` documents every column; a test fails when this code
//! and that file disagree, so the documentation cannot drift. Strings are
//! plain Utf8 in Arrow: Parquet dictionary-encodes them on disk, which is
//! where the repetition (namespaces, tools, days) is paid for.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use chrono::DateTime;

use crate::event::EnrichedAction;

/// The column the table is partitioned by.
pub const PARTITION_COLUMN: &str = "action_day";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("action", false),
        s("action_day", false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        s("namespace", false),
        s("repository", false),
        s("reference", false),
        s("tag", true),
        s("digest", false),
        s("http_method", false),
        s("country", true),
        s("host", true),
        s("type", true),
        s("domain", true),
        s("user_agent_tool", true),
        s("user_agent_version", true),
        s("owner", true),
        Field::new("ip_hash", DataType::Int64, false),
        s("os", true),
        s("arch", true),
        s("user_agent_product", true),
        Field::new("requests", DataType::Int32, false),
        Field::new("late", DataType::Boolean, false),
    ]))
});

static REJECTED_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("action_day", DataType::Utf8, false),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("repository", DataType::Utf8, false),
        Field::new("status", DataType::Int32, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("requests", DataType::Int64, false),
    ]))
});

static PERIODS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let n = |name: &str| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        s("action_day", false),
        s("granularity", false),
        s("last_day", false),
        s("fingerprint", false),
        s("level", false),
        s("namespace", false),
        s("repository", true),
        s("reference", true),
        n("pull_by_tag"),
        n("pull_by_digest"),
        n("version_check"),
        n("unique_ip_count"),
        s("owner", true),
        Field::new(
            "ip_hashes",
            DataType::List(Arc::new(ip_hashes_item())),
            true,
        ),
    ]))
});

/// The item field of `ip_hashes`, named as Delta names list elements (so
/// batches built here and the table's own schema agree).
pub fn ip_hashes_item() -> Field {
    Field::new("element", DataType::Int64, false)
}

/// Schema of the `periods` table: the pre-aggregated complete weeks and
/// months (see `query::periods` and `schemas/periods.json`).
pub fn periods_schema() -> SchemaRef {
    PERIODS_SCHEMA.clone()
}

/// Schema of the `rejected` table: requests that formed no action, counted
/// per day, repository, HTTP status and reason (`non_2xx`, `blob`,
/// `not_pull`). Rows of one ingest are pre-aggregated; sum `requests` to
/// count.
pub fn rejected_schema() -> SchemaRef {
    REJECTED_SCHEMA.clone()
}

/// The table's Arrow schema.
pub fn table_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Our name for an Arrow type, as written in `schemas/table.json`.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Int64 => "int64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp[us, {tz}]"),
        DataType::List(item) => format!("list<{}>", type_name(item.data_type())),
        other => format!("{other:?}"),
    }
}

/// `YYYY-MM-DD` of a UTC timestamp in microseconds.
pub fn day_of(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_owned())
}

/// Accumulates enriched actions column by column.
pub struct ActionBatchBuilder {
    action: StringBuilder,
    action_day: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    namespace: StringBuilder,
    repository: StringBuilder,
    reference: StringBuilder,
    tag: StringBuilder,
    digest: StringBuilder,
    http_method: StringBuilder,
    country: StringBuilder,
    host: StringBuilder,
    origin_type: StringBuilder,
    domain: StringBuilder,
    tool: StringBuilder,
    version: StringBuilder,
    owner: StringBuilder,
    ip_hash: Int64Builder,
    os: StringBuilder,
    arch: StringBuilder,
    product: StringBuilder,
    requests: Int32Builder,
    late: BooleanBuilder,
    rows: usize,
    /// The day string of the last row: actions arrive roughly in time order,
    /// so formatting each day once saves most of the date formatting.
    day_cache: (i64, String),
}

impl Default for ActionBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl ActionBatchBuilder {
    pub fn new() -> Self {
        Self {
            action: StringBuilder::new(),
            action_day: StringBuilder::new(),
            timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            namespace: StringBuilder::new(),
            repository: StringBuilder::new(),
            reference: StringBuilder::new(),
            tag: StringBuilder::new(),
            digest: StringBuilder::new(),
            http_method: StringBuilder::new(),
            country: StringBuilder::new(),
            host: StringBuilder::new(),
            origin_type: StringBuilder::new(),
            domain: StringBuilder::new(),
            tool: StringBuilder::new(),
            version: StringBuilder::new(),
            owner: StringBuilder::new(),
            ip_hash: Int64Builder::new(),
            os: StringBuilder::new(),
            arch: StringBuilder::new(),
            product: StringBuilder::new(),
            requests: Int32Builder::new(),
            late: BooleanBuilder::new(),
            rows: 0,
            day_cache: (i64::MIN, String::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, row: &EnrichedAction) {
        let a = &row.action;
        let e = &row.enrichment;
        let day_number = a.timestamp.div_euclid(MICROS_PER_DAY);
        if self.day_cache.0 != day_number {
            self.day_cache = (day_number, day_of(a.timestamp));
        }
        self.action.append_value(a.kind.as_str());
        self.action_day.append_value(&self.day_cache.1);
        self.timestamp.append_value(a.timestamp);
        self.namespace.append_value(&a.namespace);
        self.repository.append_value(&a.repository);
        self.reference.append_value(&a.reference);
        self.tag.append_option(a.tag.as_deref());
        self.digest.append_value(&a.digest);
        self.http_method.append_value(a.method.as_str());
        self.country.append_option(e.country.as_deref());
        self.host.append_option(e.host.as_deref());
        self.origin_type.append_option(e.origin_type.as_deref());
        self.domain.append_option(e.domain.as_deref());
        self.tool.append_option(e.user_agent_tool.as_deref());
        self.version.append_option(e.user_agent_version.as_deref());
        self.owner.append_option(a.owner.as_deref());
        self.ip_hash.append_value(row.ip_hash);
        self.os.append_option(e.os.as_deref());
        self.arch.append_option(e.arch.as_deref());
        self.product.append_option(e.user_agent_product.as_deref());
        self.requests
            .append_value(i32::try_from(a.requests).unwrap_or(i32::MAX));
        self.late.append_value(a.late);
        self.rows += 1;
    }

    /// Takes the rows so far as one batch and starts empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.action.finish()),
            Arc::new(self.action_day.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.repository.finish()),
            Arc::new(self.reference.finish()),
            Arc::new(self.tag.finish()),
            Arc::new(self.digest.finish()),
            Arc::new(self.http_method.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.origin_type.finish()),
            Arc::new(self.domain.finish()),
            Arc::new(self.tool.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.owner.finish()),
            Arc::new(self.ip_hash.finish()),
            Arc::new(self.os.finish()),
            Arc::new(self.arch.finish()),
            Arc::new(self.product.finish()),
            Arc::new(self.requests.finish()),
            Arc::new(self.late.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(table_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Documented {
        partition_columns: Vec<String>,
        columns: Vec<Column>,
    }

    #[derive(serde::Deserialize)]
    struct Column {
        name: String,
        arrow_type: String,
        nullable: bool,
        description: String,
    }

    /// Asserts that `schema` equals the column list documented in `json`.
    fn assert_documented(schema: &SchemaRef, json: &str) {
        let doc: Documented = serde_json::from_str(json).expect("the schema file parses");
        let code: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type()), f.is_nullable()))
            .collect();
        let documented: Vec<_> = doc
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.arrow_type.clone(), c.nullable))
            .collect();
        assert_eq!(code, documented);
        assert!(doc.columns.iter().all(|c| !c.description.is_empty()));
        assert_eq!(doc.partition_columns, vec![PARTITION_COLUMN.to_owned()]);
    }

    #[test]
    fn code_schema_matches_schemas_table_json() {
        assert_documented(&table_schema(), include_str!("../schemas/table.json"));
    }

    #[test]
    fn rejected_schema_matches_schemas_rejected_json() {
        assert_documented(&rejected_schema(), include_str!("../schemas/rejected.json"));
    }

    #[test]
    fn periods_schema_matches_schemas_periods_json() {
        assert_documented(&periods_schema(), include_str!("../schemas/periods.json"));
    }

    #[test]
    fn spec_raw_data_points_are_all_columns() {
        let schema = table_schema();
        for name in crate::query::export::RAW_COLUMNS.iter().chain(&["ip_hash"]) {
            assert!(schema.field_with_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(0), "1970-01-01");
        // 2028-02-29T23:59:59.999999Z and the next microsecond.
        let leap_end = 1_835_481_599_999_999;
        assert_eq!(day_of(leap_end), "2028-02-29");
        assert_eq!(day_of(leap_end + 1), "2028-03-01");
    }
}
