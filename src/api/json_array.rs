//! A request body that is a JSON array, read with a cap on its length: the
//! items past the cap are checked to be JSON and counted, never decoded or
//! kept, so an array of millions of tiny items costs no memory per item.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};

/// The first `max` items of a JSON array, and how many it has in all.
pub struct Capped<T> {
    pub items: Vec<T>,
    pub total: usize,
}

pub fn read_json_array<T: DeserializeOwned>(body: &[u8], max: usize) -> Result<Capped<T>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let capped = CappedSeq { max, item: PhantomData }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(capped)
}

struct CappedSeq<T> {
    max: usize,
    item: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for CappedSeq<T> {
    type Value = Capped<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Capped<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for CappedSeq<T> {
    type Value = Capped<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Capped<T>, A::Error> {
        let mut items = Vec::new();
        while items.len() < self.max {
            match seq.next_element::<T>()? {
                Some(item) => items.push(item),
                None => return Ok(Capped { total: items.len(), items }),
            }
        }
        let mut total = items.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            total += 1;
        }
        Ok(Capped { items, total })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn items_past_the_cap_are_counted_not_kept() {
        let capped: Capped<u32> = read_json_array(b"[1, 2, 3, 4, 5]", 3).expect("an array");
        assert_eq!((capped.items, capped.total), (vec![1, 2, 3], 5));
        let capped: Capped<u32> = read_json_array(b"[1, 2]", 3).expect("an array");
        assert_eq!((capped.items, capped.total), (vec![1, 2], 2));
        let raw: Capped<Box<RawValue>> = read_json_array(br#"[{"id": "a"}, {}]"#, 1).expect("an array");
        assert_eq!((raw.items[0].get(), raw.total), (r#"{"id": "a"}"#, 2));
        assert!(read_json_array::<u32>(b"{\"not\": 1}", 3).is_err());
        assert!(read_json_array::<u32>(b"[1, 2, 3, 4, x]", 3).is_err(), "items past the cap are still JSON");
        assert!(read_json_array::<u32>(b"[1] trailing", 3).is_err());
    }
}
