//! How the values that specs, flags and messages write as text are (de)serialised: one macro for
//! the types with one text form, and one visitor for those a spec may write several ways.
//!
//! Values are read by kind ([`Deserializer::deserialize_any`]) rather than as an untagged enum, so
//! that a bad string gets its own parser's message instead of "data did not match any variant".

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};

/// Serde through a type's text form: `Display` out, `FromStr` in, the parse error's text being
/// serde's message. For the types a spec, a task and a manifest write as one string.
macro_rules! serde_as_text {
    ($($ty:ty),+ $(,)?) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}
pub(crate) use serde_as_text;

/// A value a spec may write in more than one form: text, a whole number, a list, a table. Each form
/// it accepts is a method; any other is refused with serde's "invalid type: …, expected
/// [`EXPECTING`](Self::EXPECTING)".
pub(crate) trait Forms: Sized {
    /// What the value may be written as, for the error on any other form.
    const EXPECTING: &'static str;
    /// Whether a whole number is read as its decimal text (a channel `7` as `"7"`).
    const NUMBERS_AS_TEXT: bool = false;

    /// The value written as a string.
    fn from_text<E: de::Error>(text: &str) -> Result<Self, E>;

    /// The value written as a list.
    fn from_list<'de, A: SeqAccess<'de>>(_list: A) -> Result<Self, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Seq, &Self::EXPECTING))
    }

    /// The value written as a table.
    fn from_table<'de, A: MapAccess<'de>>(_table: A) -> Result<Self, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Map, &Self::EXPECTING))
    }
}

/// Reads a [`Forms`] value by the kind of value the input holds.
pub(crate) fn deserialize_forms<'de, T: Forms, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(FormsVisitor(PhantomData))
}

struct FormsVisitor<T>(PhantomData<T>);

impl<T: Forms> FormsVisitor<T> {
    fn number<E: de::Error>(digits: String, unexpected: Unexpected<'_>) -> Result<T, E> {
        if T::NUMBERS_AS_TEXT {
            T::from_text(&digits)
        } else {
            Err(E::invalid_type(unexpected, &T::EXPECTING))
        }
    }
}

impl<'de, T: Forms> Visitor<'de> for FormsVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_text(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::number(v.to_string(), Unexpected::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::number(v.to_string(), Unexpected::Signed(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, list: A) -> Result<T, A::Error> {
        T::from_list(list)
    }

    fn visit_map<A: MapAccess<'de>>(self, table: A) -> Result<T, A::Error> {
        T::from_table(table)
    }
}

/// One item of a list of text items: a string, or a whole number read as its decimal text.
pub(crate) struct TextItem(pub(crate) String);

impl Forms for TextItem {
    const EXPECTING: &'static str = "a string or a whole number";
    const NUMBERS_AS_TEXT: bool = true;

    fn from_text<E: de::Error>(text: &str) -> Result<Self, E> {
        Ok(TextItem(text.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for TextItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_forms(d)
    }
}

/// Every item of a list, in order.
pub(crate) fn list_items<'de, T: serde::Deserialize<'de>, A: SeqAccess<'de>>(
    mut list: A,
) -> Result<Vec<T>, A::Error> {
    let mut items = Vec::new();
    while let Some(item) = list.next_element::<T>()? {
        items.push(item);
    }
    Ok(items)
}
