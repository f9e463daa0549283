//! hawkBit's JSON reader accepts a number written as a string (`"137"`) and a single string where
//! a list of strings is expected (§2.5). These deserializers do the same, and nothing more.

use serde::{Deserialize, Deserializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(i64),
    String(String),
}

fn to_i64<E: Error>(v: NumberOrString) -> Result<i64, E> {
    match v {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("not an integer: {s:?}"))),
    }
}

/// A required i64 that may be written as a JSON string. `null` is an error.
pub fn i64_req<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    to_i64(NumberOrString::deserialize(d)?)
}

/// An optional i64 that may be written as a JSON string.
pub fn i64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<NumberOrString>::deserialize(d)?
        .map(to_i64)
        .transpose()
}

/// An optional i32 that may be written as a JSON string.
pub fn i32_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    i64_opt(d)?
        .map(|n| i32::try_from(n).map_err(|_| D::Error::custom("integer out of range")))
        .transpose()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A list of strings that may be written as a single string; absent or `null` is empty.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}
