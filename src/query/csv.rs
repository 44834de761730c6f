//! CSV output of query results: what arrow's CSV writer writes with its
//! defaults (a header row, `,` between fields, a field quoted only when it
//! holds `,` `"` CR or LF, quotes doubled, LF after each row, nulls empty,
//! dates `YYYY-MM-DD`) and UTC timestamps as RFC 3339 with microseconds,
//! byte for byte, but encoded straight from the arrays.
//!
//! Arrow's writer formats every value through its display machinery into a
//! string and then into a record: on a raw export that was most of the
//! process's time, on the one thread that writes. Columns of the types the
//! exports hold (strings, dates, integers, UTC microsecond timestamps) are
//! written here; a batch holding any other type goes through arrow's writer.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{
    DataType, Date32Type, Field, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;

/// Timestamps in CSV: RFC 3339, UTC, microseconds.
const CSV_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Writes record batches as CSV to `out`, the header before the first.
pub struct CsvWriter<W> {
    out: W,
    buf: Vec<u8>,
    beginning: bool,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::new(),
            beginning: true,
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.buf.clear();
        if self.beginning {
            let schema = batch.schema();
            let start = self.buf.len();
            for (i, f) in schema.fields().iter().enumerate() {
                if i > 0 {
                    self.buf.push(b',');
                }
                put_field(&mut self.buf, f.name().as_bytes());
            }
            end_record(&mut self.buf, start);
            self.beginning = false;
        }
        let at = self.buf.len();
        if !encode(batch, &mut self.buf) {
            self.buf.truncate(at);
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(false)
                .with_timestamp_tz_format(CSV_TIMESTAMP_FORMAT.to_owned())
                .build(&mut self.buf);
            w.write(&csv_timestamps(batch)?)?;
        }
        self.out.write_all(&self.buf)?;
        Ok(())
    }
}

/// A column this module writes itself.
enum Column<'a> {
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
    Date32(&'a arrow::array::Date32Array),
    Int64(&'a arrow::array::Int64Array),
    Int32(&'a arrow::array::Int32Array),
    UInt64(&'a arrow::array::UInt64Array),
    UInt32(&'a arrow::array::UInt32Array),
    Utc(&'a arrow::array::TimestampMicrosecondArray),
    /// A dictionary of values of one of the types above (`action_day`, a
    /// partition column, comes as one): each row's key into them.
    Dictionary {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Box<Column<'a>>,
    },
}

fn is_utc(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(TimeUnit::Microsecond, Some(tz))
        if matches!(tz.as_ref(), "UTC" | "+00:00" | "Z"))
}

impl<'a> Column<'a> {
    fn of(array: &'a ArrayRef) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Utf8 => Self::Utf8(array.as_string()),
            DataType::LargeUtf8 => Self::LargeUtf8(array.as_string()),
            DataType::Utf8View => Self::Utf8View(array.as_string_view()),
            DataType::Date32 => Self::Date32(array.as_primitive::<Date32Type>()),
            DataType::Int64 => Self::Int64(array.as_primitive::<Int64Type>()),
            DataType::Int32 => Self::Int32(array.as_primitive::<Int32Type>()),
            DataType::UInt64 => Self::UInt64(array.as_primitive::<UInt64Type>()),
            DataType::UInt32 => Self::UInt32(array.as_primitive::<UInt32Type>()),
            t if is_utc(t) => Self::Utc(array.as_primitive::<TimestampMicrosecondType>()),
            DataType::Dictionary(..) => {
                let dictionary = array.as_any_dictionary();
                // No values: every key is null (arrow's writer has it).
                if dictionary.values().is_empty() {
                    return None;
                }
                Self::Dictionary {
                    array: array.as_ref(),
                    keys: dictionary.normalized_keys(),
                    values: Box::new(Self::of(dictionary.values())?),
                }
            }
            _ => return None,
        })
    }

    fn array(&self) -> &dyn Array {
        match self {
            Self::Utf8(a) => *a,
            Self::LargeUtf8(a) => *a,
            Self::Utf8View(a) => *a,
            Self::Date32(a) => *a,
            Self::Int64(a) => *a,
            Self::Int32(a) => *a,
            Self::UInt64(a) => *a,
            Self::UInt32(a) => *a,
            Self::Utc(a) => *a,
            Self::Dictionary { array, .. } => *array,
        }
    }

    /// The text of row `i` (a null is empty), in `scratch` when it has to
    /// be made; `None` for a value arrow's writer would refuse (a date or
    /// time beyond chrono's range).
    fn text<'s>(&'s self, i: usize, scratch: &'s mut Vec<u8>) -> Option<&'s [u8]> {
        if self.array().is_null(i) {
            return Some(b"");
        }
        let number = |scratch: &'s mut Vec<u8>, n: i128| {
            let _ = write!(scratch, "{n}");
            Some(&scratch[..])
        };
        match self {
            Self::Utf8(a) => Some(a.value(i).as_bytes()),
            Self::LargeUtf8(a) => Some(a.value(i).as_bytes()),
            Self::Utf8View(a) => Some(a.value(i).as_bytes()),
            Self::Int64(a) => number(scratch, a.value(i).into()),
            Self::Int32(a) => number(scratch, a.value(i).into()),
            Self::UInt64(a) => number(scratch, a.value(i).into()),
            Self::UInt32(a) => number(scratch, a.value(i).into()),
            Self::Date32(a) => {
                let seconds = i64::from(a.value(i)) * 86_400;
                let date = chrono::DateTime::from_timestamp(seconds, 0)?.date_naive();
                put_date(date, scratch);
                Some(&scratch[..])
            }
            Self::Utc(a) => rfc3339_micros(a.value(i), scratch).then_some(&scratch[..]),
            Self::Dictionary { keys, values, .. } => values.text(keys[i], scratch),
        }
    }
}

/// Appends every row of `batch`; false (with part of it appended) when a
/// column or a value is not one this module writes.
fn encode(batch: &RecordBatch, buf: &mut Vec<u8>) -> bool {
    let Some(columns) = batch
        .columns()
        .iter()
        .map(Column::of)
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let mut scratch = Vec::with_capacity(64);
    for row in 0..batch.num_rows() {
        let start = buf.len();
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            scratch.clear();
            let Some(text) = column.text(row, &mut scratch) else {
                return false;
            };
            put_field(buf, text);
        }
        end_record(buf, start);
    }
    true
}

/// A field, quoted when it holds a byte that would end it (the csv crate's
/// `QuoteStyle::Necessary` with `"` doubled, as arrow's writer sets it up).
fn put_field(buf: &mut Vec<u8>, field: &[u8]) {
    if !field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        buf.extend_from_slice(field);
        return;
    }
    buf.push(b'"');
    for &b in field {
        if b == b'"' {
            buf.push(b'"');
        }
        buf.push(b);
    }
    buf.push(b'"');
}

/// Ends a record begun at `start`: a record that wrote nothing (one empty
/// field) is `""`, so that it is not read as no record at all.
fn end_record(buf: &mut Vec<u8>, start: usize) {
    if buf.len() == start {
        buf.extend_from_slice(b"\"\"");
    }
    buf.push(b'\n');
}

/// Appends `date` as arrow writes a date without a format (chrono's
/// `Debug`: `YYYY-MM-DD`, a sign and more digits outside years 0–9999).
fn put_date(date: chrono::NaiveDate, out: &mut Vec<u8>) {
    use chrono::Datelike;
    let Ok(year @ 0..=9999) = u32::try_from(date.year()) else {
        let _ = write!(out, "{date:?}");
        return;
    };
    let mut s = *b"0000-00-00";
    put_digits(&mut s[0..4], year);
    put_digits(&mut s[5..7], date.month());
    put_digits(&mut s[8..10], date.day());
    out.extend_from_slice(&s);
}

/// Writes `n` into `at`, right-aligned, zero-padded.
fn put_digits(at: &mut [u8], mut n: u32) {
    for d in at.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Appends `micros` (since the epoch, UTC) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`,
/// as chrono formats [`CSV_TIMESTAMP_FORMAT`] (which it falls back to
/// outside years 0–9999); false, appending nothing, beyond chrono's range.
fn rfc3339_micros(micros: i64, out: &mut Vec<u8>) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else {
        return false;
    };
    let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
        let _ = write!(out, "{}", t.format(CSV_TIMESTAMP_FORMAT));
        return true;
    };
    let mut s = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut s[0..4], year);
    put_digits(&mut s[5..7], t.month());
    put_digits(&mut s[8..10], t.day());
    put_digits(&mut s[11..13], t.hour());
    put_digits(&mut s[14..16], t.minute());
    put_digits(&mut s[17..19], t.second());
    put_digits(&mut s[20..26], t.timestamp_subsec_micros());
    out.extend_from_slice(&s);
    true
}

/// `batch` with its UTC microsecond timestamps as text (for arrow's writer,
/// which would parse the format string again for every value). Other
/// columns, and timestamps of another unit or zone, are left to the writer.
fn csv_timestamps(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_utc(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    let mut scratch = Vec::with_capacity(32);
    for (f, column) in schema.fields().iter().zip(batch.columns()) {
        if !is_utc(f.data_type()) {
            fields.push(Arc::clone(f));
            columns.push(Arc::clone(column));
            continue;
        }
        let ts = column.as_primitive::<TimestampMicrosecondType>();
        let mut text = StringBuilder::with_capacity(ts.len(), ts.len() * 27);
        for v in ts.iter() {
            let Some(micros) = v else {
                text.append_null();
                continue;
            };
            scratch.clear();
            if !rfc3339_micros(micros, &mut scratch) {
                return Err(ArrowError::CastError(format!(
                    "{}: {micros} µs since 1970 is not a date that can be written",
                    f.name()
                )));
            }
            // ASCII digits and punctuation, or chrono's own text.
            text.append_value(String::from_utf8_lossy(&scratch));
        }
        fields.push(Arc::new(Field::new(
            f.name(),
            DataType::Utf8,
            f.is_nullable(),
        )));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Date32Array, DictionaryArray, Float64Array, Int32Array, Int64Array,
        LargeStringArray, StringArray, StringViewArray, TimestampMicrosecondArray, UInt32Array,
        UInt64Array,
    };
    use arrow::datatypes::UInt16Type;
    use proptest::prelude::*;

    fn fast(micros: i64) -> Option<String> {
        let mut out = Vec::new();
        rfc3339_micros(micros, &mut out).then(|| String::from_utf8(out).expect("text"))
    }

    fn chrono(micros: i64) -> Option<String> {
        chrono::DateTime::from_timestamp_micros(micros)
            .map(|t| t.format(CSV_TIMESTAMP_FORMAT).to_string())
    }

    /// What arrow's writer makes of `batches` (the output before this
    /// module), or its error.
    fn arrow_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .with_timestamp_tz_format(CSV_TIMESTAMP_FORMAT.to_owned())
            .build(&mut out);
        for b in batches {
            csv_timestamps(b)
                .and_then(|b| w.write(&b))
                .map_err(|e| e.to_string())?;
        }
        drop(w);
        Ok(out)
    }

    fn ours(batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut w = CsvWriter::new(&mut out);
        for b in batches {
            w.write(b).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    proptest! {
        /// Digit by digit, the same text as chrono's formatting, before
        /// 1970, in years 0–9999 and beyond.
        #[test]
        fn timestamps_are_written_as_chrono_formats_them(
            micros in prop_oneof![
                -62_167_219_200_000_000i64..253_402_300_800_000_000,
                any::<i64>(),
            ]
        ) {
            prop_assert_eq!(fast(micros), chrono(micros));
        }

        /// Byte for byte arrow's output (or an error where it has one),
        /// whatever the text holds: delimiters, quotes, line ends, empty
        /// fields, nulls, dates and times near and beyond the ends of
        /// chrono's range, and with a column of a type left to arrow.
        #[test]
        fn the_same_bytes_as_arrows_writer(
            rows in prop::collection::vec(
                (
                    prop::option::of("[a-c,\"\r\n é]{0,6}"),
                    prop::option::of(prop_oneof![-800_000i32..3_000_000, any::<i32>()]),
                    prop::option::of(any::<i64>()),
                    prop::option::of(prop_oneof![
                        -62_167_219_200_000_000i64..253_402_300_800_000_000,
                        any::<i64>(),
                    ]),
                    any::<u32>(),
                ),
                0..12,
            ),
            names in ("[a-c,\" ]{0,3}", "[a-c]{1,3}"),
            float in any::<bool>(),
            cut in 0usize..12,
        ) {
            let text: Vec<Option<String>> = rows.iter().map(|r| r.0.clone()).collect();
            let mut columns: Vec<(String, ArrayRef)> = vec![
                (names.0.clone(), Arc::new(StringArray::from(text.clone()))),
                (format!("{}v", names.1), Arc::new(StringViewArray::from(text.clone()))),
                ("large".into(), Arc::new(LargeStringArray::from(text))),
                ("day".into(), Arc::new(Date32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()))),
                ("n".into(), Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
                ("t".into(), Arc::new(TimestampMicrosecondArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()).with_timezone("UTC"))),
                ("u".into(), Arc::new(UInt32Array::from(rows.iter().map(|r| r.4).collect::<Vec<_>>()))),
                ("w".into(), Arc::new(UInt64Array::from(rows.iter().map(|r| u64::from(r.4) << 20).collect::<Vec<_>>()))),
                ("i".into(), Arc::new(Int32Array::from(rows.iter().map(|r| r.4 as i32).collect::<Vec<_>>()))),
                ("d".into(), Arc::new(rows.iter().map(|r| r.0.as_deref()).collect::<DictionaryArray<UInt16Type>>())),
            ];
            if float {
                columns.push(("f".into(), Arc::new(Float64Array::from(rows.iter().map(|r| f64::from(r.4) / 7.0).collect::<Vec<_>>()))));
                columns.push(("b".into(), Arc::new(BooleanArray::from(rows.iter().map(|r| r.4 % 2 == 0).collect::<Vec<_>>()))));
            }
            let batch = RecordBatch::try_from_iter(columns).expect("batch");
            let cut = cut.min(batch.num_rows());
            let batches = [batch.slice(0, cut), batch.slice(cut, batch.num_rows() - cut)];
            let (theirs, ours) = (arrow_csv(&batches), super::tests::ours(&batches));
            prop_assert_eq!(theirs.is_ok(), ours.is_ok(), "{:?} / {:?}", theirs, ours);
            if let (Ok(theirs), Ok(ours)) = (theirs, ours) {
                prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
            }
        }
    }

    #[rstest::rstest]
    #[case(0, "1970-01-01T00:00:00.000000Z")]
    #[case(-1, "1969-12-31T23:59:59.999999Z")]
    #[case(1_792_972_799_999_000, "2026-10-25T23:59:59.999000Z")]
    fn timestamps_known(#[case] micros: i64, #[case] text: &str) {
        assert_eq!(fast(micros).as_deref(), Some(text));
    }

    #[test]
    fn a_lone_empty_field_and_a_header_are_written_as_arrow_does() {
        let one = RecordBatch::try_from_iter([(
            "",
            Arc::new(StringArray::from(vec![Some(""), None, Some("a\"b")])) as ArrayRef,
        )])
        .expect("batch");
        let out = ours(std::slice::from_ref(&one)).expect("csv");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\"\"\n\"\"\n\"\"\n\"a\"\"b\"\n"
        );
        assert_eq!(Ok(out), arrow_csv(&[one]));
    }

    #[test]
    fn only_utc_microsecond_columns_become_text() {
        let utc = TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("UTC");
        let paris =
            TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("Europe/Paris");
        let batch = RecordBatch::try_from_iter([
            ("utc", Arc::new(utc) as ArrayRef),
            ("paris", Arc::new(paris) as ArrayRef),
        ])
        .expect("batch");
        let out = csv_timestamps(&batch).expect("convert");
        let text = out.column(0).as_string::<i32>();
        assert_eq!(text.value(0), "1970-01-01T00:00:00.000000Z");
        assert!(text.is_null(1));
        assert_eq!(out.column(1).data_type(), batch.column(1).data_type());
        let beyond = TimestampMicrosecondArray::from(vec![i64::MAX]).with_timezone("UTC");
        let batch =
            RecordBatch::try_from_iter([("t", Arc::new(beyond) as ArrayRef)]).expect("batch");
        assert!(csv_timestamps(&batch).is_err());
        assert!(ours(&[batch]).is_err());
    }
}
