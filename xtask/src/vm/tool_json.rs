//! Reading numbers from the tool's JSON output.
use serde_json::Value;

/// A number of the tool's JSON: kernel addresses and masks are hex strings ("0x...") since
/// check schema v2 and recording v2 (jq would round a u64), counts and offsets plain numbers.
pub fn json_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_strings_and_numbers_both_read() {
        assert_eq!(json_u64(&serde_json::json!("0xfffffffffffffff8")), Some(!7));
        assert_eq!(json_u64(&serde_json::json!(44)), Some(44));
        assert_eq!(json_u64(&serde_json::json!("44")), None);
        assert_eq!(json_u64(&Value::Null), None);
    }
}
