//! Kernel addresses in JSON: written as hex strings (`"0xffffffff81234560"`), because JSON
//! numbers above 2^53 lose their low digits in jq, JavaScript and most other parsers; read
//! back from either a hex string or a number (recordings written before version 2 hold
//! numbers). Use with `#[serde(with = "crate::hex")]`, or [`opt`] for `Option<u64>`.
use serde::{de, Deserializer, Serializer};

/// `0x` and lower-case hex digits.
pub fn format(v: u64) -> String {
    format!("{v:#x}")
}

/// Serializes an address as a hex string.
pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*v))
}

/// Reads an address written as a hex string (`0x...`) or as a number.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(AddrVisitor)
}

struct AddrVisitor;

impl de::Visitor<'_> for AddrVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an address: a \"0x...\" hex string or a number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format_args!("negative address {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let digits = v
            .strip_prefix("0x")
            .or_else(|| v.strip_prefix("0X"))
            .ok_or_else(|| E::custom(format_args!("address {v:?} does not start with 0x")))?;
        u64::from_str_radix(digits, 16)
            .map_err(|_| E::custom(format_args!("address {v:?} is not hex")))
    }
}

/// The same for `Option<u64>` (`null` stays `null`).
pub mod opt {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a known address as a hex string, an unknown one as `null`.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_str(&super::format(*a)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null`, a hex string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] u64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct T {
        #[serde(with = "crate::hex")]
        a: u64,
        #[serde(with = "crate::hex::opt", default)]
        b: Option<u64>,
    }

    #[test]
    fn hex_out_number_or_hex_in() {
        let t = T {
            a: 0xffffffff82a4b816,
            b: Some(0x10),
        };
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, r#"{"a":"0xffffffff82a4b816","b":"0x10"}"#);
        assert_eq!(serde_json::from_str::<T>(&s).unwrap(), t);
        // What version-1 recordings and older check output hold: numbers.
        let old: T = serde_json::from_str(r#"{"a":18446744071606417430,"b":null}"#).unwrap();
        assert_eq!(old.a, 0xffffffff82a4b816);
        assert_eq!(old.b, None);
        assert!(serde_json::from_str::<T>(r#"{"a":"ffff"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":-1}"#).is_err());
    }
}
