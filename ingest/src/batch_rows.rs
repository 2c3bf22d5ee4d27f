//! The rows an external build's writers are given (Arrow key and value columns from Spark or pyarrow),
//! checked by the rules `cairn ingest` applies to its inputs: no null or empty key, a valid key, a value
//! (a delta's without its tag) within the limit.

use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

use crate::byte_column::{ByteColumn, readable};
use crate::error::IngestError;
use crate::record::check_record;

pub struct BatchRows<'a> {
    keys: ByteColumn<'a>,
    values: ByteColumn<'a>,
    len: usize,
    delta: bool,
}

fn invalid(why: String) -> IngestError {
    IngestError::Invalid(why)
}

impl<'a> BatchRows<'a> {
    /// `delta`: values carry a delta layer's tag (checked by the shard writer), the rules apply to the rest.
    pub fn new(keys: &'a ArrayRef, values: &'a ArrayRef, delta: bool) -> Result<BatchRows<'a>, IngestError> {
        if keys.len() != values.len() {
            return Err(invalid(format!("columns of different lengths: {} keys, {} values", keys.len(), values.len())));
        }
        let type_err =
            |what: &str, dt: &DataType| invalid(format!("the {what} column is {dt}; expected strings or binary"));
        if !readable(keys.data_type(), true) {
            return Err(type_err("key", keys.data_type()));
        }
        if !readable(values.data_type(), true) {
            return Err(type_err("value", values.data_type()));
        }
        let (k, v) = (ByteColumn::new(keys).expect("checked"), ByteColumn::new(values).expect("checked"));
        Ok(BatchRows { keys: k, values: v, len: keys.len(), delta })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `i`'s key (without checking it: for placement, before [`BatchRows::row`] checks it); empty if null.
    pub fn raw_key(&self, i: usize) -> &'a [u8] {
        self.keys.get(i).unwrap_or_default()
    }

    /// Row `i`, checked.
    pub fn row(&self, i: usize) -> Result<(&'a str, &'a [u8]), IngestError> {
        let key = self.keys.get(i).ok_or_else(|| invalid("a null key".into()))?;
        if key.is_empty() {
            return Err(invalid("an empty key".into()));
        }
        let shown = || String::from_utf8_lossy(key);
        let value = self.values.get(i).ok_or_else(|| invalid(format!("a null value for key {:?}", shown())))?;
        let untagged = if self.delta { value.get(1..).unwrap_or_default() } else { value };
        check_record(key, untagged).map_err(|why| invalid(format!("key {:?}: {why}", shown())))?;
        Ok((std::str::from_utf8(key).expect("check_record checks UTF-8"), value))
    }
}
