//! A key or value column of any string or binary Arrow type, read as bytes per row (None for null): keys
//! may be Utf8 / LargeUtf8 / Utf8View or a dictionary of them; values also Binary / LargeBinary /
//! BinaryView / FixedSizeBinary, stored byte for byte.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

pub enum ByteColumn<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
    BinaryView(&'a arrow_array::BinaryViewArray),
    Fixed(&'a arrow_array::FixedSizeBinaryArray),
    Dictionary { array: &'a dyn Array, keys: Vec<usize>, values: Box<ByteColumn<'a>> },
}

/// Whether `dt` holds strings (`binary`: or bytes) that a [`ByteColumn`] reads.
pub fn readable(dt: &DataType, binary: bool) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => binary,
        DataType::Dictionary(_, v) => readable(v, binary),
        _ => false,
    }
}

impl<'a> ByteColumn<'a> {
    /// None when the array's type is not [`readable`] (the schema check comes first).
    pub fn new(array: &'a ArrayRef) -> Option<ByteColumn<'a>> {
        Self::of(array.as_ref())
    }

    fn of(array: &'a dyn Array) -> Option<ByteColumn<'a>> {
        Some(match array.data_type() {
            DataType::Utf8 => ByteColumn::Utf8(array.as_string()),
            DataType::LargeUtf8 => ByteColumn::LargeUtf8(array.as_string()),
            DataType::Utf8View => ByteColumn::Utf8View(array.as_string_view()),
            DataType::Binary => ByteColumn::Binary(array.as_binary()),
            DataType::LargeBinary => ByteColumn::LargeBinary(array.as_binary()),
            DataType::BinaryView => ByteColumn::BinaryView(array.as_binary_view()),
            DataType::FixedSizeBinary(_) => ByteColumn::Fixed(array.as_fixed_size_binary()),
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary_opt()?;
                let values = Box::new(Self::of(dict.values().as_ref())?);
                ByteColumn::Dictionary { array, keys: dict.normalized_keys(), values }
            }
            _ => return None,
        })
    }

    /// Row `i`'s bytes, None if it is null.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        fn at<'b>(a: &'b dyn Array, i: usize, v: impl FnOnce() -> &'b [u8]) -> Option<&'b [u8]> {
            (!a.is_null(i)).then(v)
        }
        match self {
            ByteColumn::Utf8(a) => at(*a, i, || a.value(i).as_bytes()),
            ByteColumn::LargeUtf8(a) => at(*a, i, || a.value(i).as_bytes()),
            ByteColumn::Utf8View(a) => at(*a, i, || a.value(i).as_bytes()),
            ByteColumn::Binary(a) => at(*a, i, || a.value(i)),
            ByteColumn::LargeBinary(a) => at(*a, i, || a.value(i)),
            ByteColumn::BinaryView(a) => at(*a, i, || a.value(i)),
            ByteColumn::Fixed(a) => at(*a, i, || a.value(i)),
            ByteColumn::Dictionary { array, keys, values } => {
                if array.is_null(i) {
                    None
                } else {
                    values.get(keys[i])
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::Int16Type;
    use arrow_array::{BinaryArray, DictionaryArray, FixedSizeBinaryArray, LargeStringArray, StringViewArray};

    use super::*;

    #[test]
    fn every_type_reads_as_bytes() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(LargeStringArray::from(vec![Some("a"), None])),
            Arc::new(StringViewArray::from(vec![Some("a"), None])),
            Arc::new(BinaryArray::from(vec![Some(&b"a"[..]), None])),
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size([Some(b"a"), None].into_iter(), 1).unwrap()),
            Arc::new(vec![Some("a"), None].into_iter().collect::<DictionaryArray<Int16Type>>()),
        ];
        for a in &arrays {
            assert!(readable(a.data_type(), true), "{}", a.data_type());
            let c = ByteColumn::new(a).unwrap();
            assert_eq!((c.get(0), c.get(1)), (Some(&b"a"[..]), None), "{}", a.data_type());
        }
        assert!(!readable(&DataType::Binary, false));
        assert!(!readable(&DataType::Int64, true));
        assert!(ByteColumn::new(&(Arc::new(arrow_array::Int64Array::from(vec![1])) as ArrayRef)).is_none());
    }
}
