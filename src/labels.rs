//! The four When2Call behaviour labels and the `invalid` prediction.
//!
//! This module owns the label vocabulary: gold labels are always one of
//! [`Label::ALL`]; a prediction is a [`Prediction`], which adds `invalid` for
//! outputs that could not be parsed. An invalid prediction is never coerced
//! into a class.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A When2Call behaviour class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The model answers directly without a tool.
    Direct,
    /// The model calls one of the offered tools.
    ToolCall,
    /// The model asks a follow-up question for missing information.
    RequestForInfo,
    /// The model says it cannot answer with the tools it has.
    CannotAnswer,
}

impl Label {
    /// All labels, in the benchmark's canonical order.
    pub const ALL: [Label; 4] = [
        Label::Direct,
        Label::ToolCall,
        Label::RequestForInfo,
        Label::CannotAnswer,
    ];

    /// The label's wire name (`direct`, `tool_call`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Direct => "direct",
            Label::ToolCall => "tool_call",
            Label::RequestForInfo => "request_for_info",
            Label::CannotAnswer => "cannot_answer",
        }
    }

    /// Position of the label in [`Label::ALL`].
    pub fn index(self) -> usize {
        match self {
            Label::Direct => 0,
            Label::ToolCall => 1,
            Label::RequestForInfo => 2,
            Label::CannotAnswer => 3,
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that is not one of the four labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a When2Call label (expected one of direct, tool_call, request_for_info, cannot_answer)")]
pub struct UnknownLabel(pub String);

impl FromStr for Label {
    type Err = UnknownLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Label::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

/// A model's predicted behaviour: one of the labels, or `invalid` when the
/// output could not be mapped to a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prediction {
    /// A parsed label.
    Label(Label),
    /// The output could not be parsed; counts as wrong for every gold label.
    Invalid,
}

impl Prediction {
    /// The wire name: a label name or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Prediction::Label(l) => l.as_str(),
            Prediction::Invalid => "invalid",
        }
    }

    /// The label, if the prediction is valid.
    pub fn label(self) -> Option<Label> {
        match self {
            Prediction::Label(l) => Some(l),
            Prediction::Invalid => None,
        }
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Prediction {
    type Err = UnknownLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "invalid" {
            Ok(Prediction::Invalid)
        } else {
            s.parse().map(Prediction::Label)
        }
    }
}

impl Serialize for Prediction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Prediction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_strings_and_json() {
        for l in Label::ALL {
            assert_eq!(l.as_str().parse::<Label>().unwrap(), l);
            assert_eq!(Label::ALL[l.index()], l);
            let j = serde_json::to_string(&l).unwrap();
            assert_eq!(j, format!("\"{}\"", l.as_str()));
        }
        let p: Prediction = serde_json::from_str("\"invalid\"").unwrap();
        assert_eq!(p, Prediction::Invalid);
        assert!("Direct".parse::<Label>().is_err());
        assert!(serde_json::from_str::<Prediction>("\"maybe\"").is_err());
    }
}
