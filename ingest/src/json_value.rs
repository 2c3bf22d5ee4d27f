//! `--value-columns`: a Parquet row's chosen columns as one JSON object (docs/INPUTS.md says what is written).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};

/// One JSON object per row, `\n`-terminated, of `names` in that order (arrow-json's encoding, nulls
/// written as `null`).
pub(crate) fn encode_json(
    batch: &RecordBatch,
    names: &[String],
    out: &mut Vec<u8>,
) -> Result<(), arrow_schema::ArrowError> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(names.len());
    let mut cols = Vec::with_capacity(names.len());
    for n in names {
        let i = schema.index_of(n)?;
        fields.push(Field::new(n, schema.field(i).data_type().clone(), true));
        cols.push(batch.column(i).clone());
    }
    let values = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    out.clear();
    let mut w = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::LineDelimited>(&mut *out);
    w.write(&values)?;
    w.finish()
}
