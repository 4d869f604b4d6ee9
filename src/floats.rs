//! The one codec for non-finite floats on disk: JSON has no NaN or
//! infinities, so records store them as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"` (the spelling Python's `json` module and MLflow use too).

/// Serde helpers storing non-finite `f64` as `"NaN"`, `"Infinity"`,
/// `"-Infinity"` strings so that every checkpoint stays strict JSON.
/// The spelling of a non-finite float (`"NaN"`, `"Infinity"`,
/// `"-Infinity"`); finite values have none.
pub fn spelled(v: f64) -> Option<&'static str> {
    if v.is_finite() {
        None
    } else if v.is_nan() {
        Some("NaN")
    } else if v > 0.0 {
        Some("Infinity")
    } else {
        Some("-Infinity")
    }
}

/// The non-finite float a string spells, if it spells one.
pub fn parse_spelled(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Serde `with` module: finite values as numbers, others spelled.
pub mod finite_or_string {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises finite values as numbers, others as strings.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match super::spelled(*v) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_f64(*v),
        }
    }

    /// Accepts a number or one of the three strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(f64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(n),
            Repr::Str(s) => super::parse_spelled(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got {s:?}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[test]
    fn non_finite_floats_round_trip_as_strings() {
        #[derive(Serialize, Deserialize, Debug)]
        struct R {
            #[serde(with = "super::finite_or_string")]
            x: f64,
        }
        for v in [1.5, f64::INFINITY, f64::NEG_INFINITY] {
            let s = serde_json::to_string(&R { x: v }).unwrap();
            let back: R = serde_json::from_str(&s).unwrap();
            assert_eq!(back.x, v);
        }
        let s = serde_json::to_string(&R { x: f64::NAN }).unwrap();
        assert_eq!(s, r#"{"x":"NaN"}"#);
        assert!(serde_json::from_str::<R>(&s).unwrap().x.is_nan());
        assert!(serde_json::from_str::<R>(r#"{"x":"inf"}"#).is_err());
    }
}
