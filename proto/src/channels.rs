//! Channel selections: `all`, or a list of inclusive ranges such as `0-7,12,100-103`.
//!
//! A selection is parsed without knowing the layer; [`ChannelSelection::expand`] checks it against the
//! layer's width and yields the sorted, de-duplicated channel numbers.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess};
use serde::{Deserialize, Serialize, Serializer};

use crate::text_forms::{Forms, TextItem, deserialize_forms, list_items};

/// A channel selection string or list that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel range {range:?}: {reason}")]
pub struct ChannelParseError {
    /// The offending item of the list (or the whole input when it is empty).
    pub range: String,
    /// Why it was rejected.
    pub reason: String,
}

/// A selection that does not fit the layer it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channels of layer {layer}: range {range} is beyond the layer width {width}")]
pub struct ChannelBoundsError {
    /// The layer the selection was applied to.
    pub layer: String,
    /// The range that does not fit, as written (`12-20`).
    pub range: String,
    /// The layer's number of channels; valid channels are `0..width`.
    pub width: usize,
}

/// One inclusive range of channels; `start == end` for a single channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelRange {
    /// First channel of the range.
    pub start: u32,
    /// Last channel of the range (inclusive).
    pub end: u32,
}

impl fmt::Display for ChannelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for ChannelRange {
    type Err = ChannelParseError;

    fn from_str(item: &str) -> Result<Self, ChannelParseError> {
        let fail = |reason: &str| ChannelParseError {
            range: item.to_owned(),
            reason: reason.to_owned(),
        };
        let num = |s: &str| -> Result<u32, ChannelParseError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail("expected a channel number or `start-end`"));
            }
            s.parse::<u32>()
                .map_err(|_| fail("channel number is too large"))
        };
        let (start, end) = match item.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(item)?;
                (n, n)
            }
        };
        if start > end {
            return Err(fail("start is greater than end"));
        }
        Ok(ChannelRange { start, end })
    }
}

/// Which channels of a layer to render.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChannelSelection {
    /// Every channel of the layer.
    #[default]
    All,
    /// The union of these ranges; never empty.
    Ranges(Vec<ChannelRange>),
}

impl ChannelSelection {
    /// Parses `all` or a comma-separated list of ranges (`0-7,12`); whitespace around items is ignored.
    pub fn parse(input: &str) -> Result<Self, ChannelParseError> {
        let trimmed = input.trim();
        if trimmed.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        Self::from_items(trimmed.split(','))
    }

    fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, ChannelParseError> {
        let ranges = items
            .into_iter()
            .map(|item| item.trim().parse())
            .collect::<Result<Vec<ChannelRange>, _>>()?;
        if ranges.is_empty() {
            return Err(ChannelParseError {
                range: String::new(),
                reason: "the list of ranges is empty".into(),
            });
        }
        Ok(Self::Ranges(ranges))
    }

    /// The selected channels of `layer` (which has `width` channels), sorted and without duplicates.
    ///
    /// Fails naming the layer and the first range that reaches past the width.
    pub fn expand(&self, layer: &str, width: usize) -> Result<Vec<u32>, ChannelBoundsError> {
        match self {
            Self::All => {
                let width32 = u32::try_from(width).map_err(|_| ChannelBoundsError {
                    layer: layer.to_owned(),
                    range: "all".into(),
                    width,
                })?;
                Ok((0..width32).collect())
            }
            Self::Ranges(ranges) => {
                let mut out = Vec::new();
                for r in ranges {
                    if !usize::try_from(r.end).is_ok_and(|end| end < width) {
                        return Err(ChannelBoundsError {
                            layer: layer.to_owned(),
                            range: r.to_string(),
                            width,
                        });
                    }
                    out.extend(r.start..=r.end);
                }
                out.sort_unstable();
                out.dedup();
                Ok(out)
            }
        }
    }
}

impl fmt::Display for ChannelSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Ranges(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for ChannelSelection {
    type Err = ChannelParseError;
    fn from_str(s: &str) -> Result<Self, ChannelParseError> {
        Self::parse(s)
    }
}

/// Serialises as the canonical string form (`all` or `0-7,12`).
impl Serialize for ChannelSelection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Accepts a string (`"all"`, `"0-7,12"`), a single integer, or a list of strings and integers.
impl Forms for ChannelSelection {
    const EXPECTING: &'static str = "\"all\", a range list like \"0-7,12\", or a list of ranges";
    const NUMBERS_AS_TEXT: bool = true;

    fn from_list<'de, A: SeqAccess<'de>>(list: A) -> Result<Self, A::Error> {
        let items: Vec<TextItem> = list_items(list)?;
        ChannelSelection::from_items(items.iter().map(|item| item.0.as_str()))
            .map_err(de::Error::custom)
    }

    fn from_text<E: de::Error>(text: &str) -> Result<Self, E> {
        ChannelSelection::parse(text).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ChannelSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_forms(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_expands_ranges() {
        let sel = ChannelSelection::parse("0-7, 12,100-103").unwrap();
        assert_eq!(sel.to_string(), "0-7,12,100-103");
        let ch = sel.expand("conv2", 192).unwrap();
        assert_eq!(ch.len(), 8 + 1 + 4);
        assert_eq!(&ch[..3], &[0, 1, 2]);
        assert_eq!(*ch.last().unwrap(), 103);
    }

    #[test]
    fn overlapping_ranges_are_deduplicated_and_sorted() {
        let sel = ChannelSelection::parse("5-9,0-6,3").unwrap();
        assert_eq!(sel.expand("l", 10).unwrap(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn all_expands_to_width() {
        assert_eq!(
            ChannelSelection::parse("ALL").unwrap(),
            ChannelSelection::All
        );
        assert_eq!(ChannelSelection::All.expand("fc8", 565).unwrap().len(), 565);
        assert!(ChannelSelection::All.expand("empty", 0).unwrap().is_empty());
    }

    #[test]
    fn bounds_error_names_layer_and_range() {
        let sel = ChannelSelection::parse("0-3,60-64").unwrap();
        let err = sel.expand("conv1", 64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "channels of layer conv1: range 60-64 is beyond the layer width 64"
        );
        assert!(sel.expand("conv2", 65).is_ok());
    }

    #[test]
    fn parse_errors() {
        for (input, reason) in [
            ("", "expected a channel number"),
            ("1,,2", "expected a channel number"),
            ("7-0", "start is greater than end"),
            ("a-3", "expected a channel number"),
            ("-3", "expected a channel number"),
            ("1-2-3", "expected a channel number"),
            ("99999999999", "too large"),
        ] {
            let err = ChannelSelection::parse(input).unwrap_err();
            assert!(err.reason.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn deserialises_strings_numbers_and_lists() {
        let from = |j: &str| {
            serde_json::from_str::<ChannelSelection>(j)
                .unwrap()
                .to_string()
        };
        assert_eq!(from("\"all\""), "all");
        assert_eq!(from("\"0-3\""), "0-3");
        assert_eq!(from("12"), "12");
        assert_eq!(from("[\"0-7\", 12, \"20-21\"]"), "0-7,12,20-21");
        assert!(serde_json::from_str::<ChannelSelection>("[]").is_err());
        assert!(serde_json::from_str::<ChannelSelection>("\"3-1\"").is_err());
    }
}
