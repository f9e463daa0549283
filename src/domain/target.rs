//! Target rules that do not need the database: display names, DMF addresses, controller
//! attributes and their update modes (dmf-protocol.md §1.5, §3.3, §7).

use std::collections::BTreeMap;

use super::Invalid;
use super::names::named_enum;

pub const MAX_NAME: usize = 128;
pub const MAX_ADDRESS: usize = 512;
pub const MAX_ATTRIBUTE_KEY: usize = 128;
pub const MAX_ATTRIBUTE_VALUE: usize = 128;
pub const MAX_ATTRIBUTES: usize = 100;

named_enum! {
    /// Update status of a target (rollouts.md §1.1).
    pub enum UpdateStatus {
        Unknown = "UNKNOWN",
        InSync = "IN_SYNC",
        Pending = "PENDING",
        Error = "ERROR",
        Registered = "REGISTERED",
    }
}

/// The stored address of a DMF target: `amqp://<vhost>/<exchange>`, or `amqp:/<exchange>` for
/// the default vhost `/` (hawkBit's URI arithmetic, §1.5). The exchange is percent-encoded where
/// a URI path needs it.
pub fn dmf_address(vhost: &str, reply_to: &str) -> Result<String, Invalid> {
    if reply_to.is_empty() {
        return Err(Invalid::new("reply_to is empty"));
    }
    if reply_to
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Invalid::new(format!(
            "reply_to {reply_to:?} is not usable in an address"
        )));
    }
    let path = percent_encode_path(reply_to);
    let address = if vhost == "/" || vhost.is_empty() {
        format!("amqp:/{path}")
    } else {
        format!("amqp://{}/{path}", percent_encode_path(vhost))
    };
    if address.chars().count() > MAX_ADDRESS {
        return Err(Invalid::new("address is longer than 512 characters"));
    }
    Ok(address)
}

/// The exchange a stored address points at, or `None` when the address is not a DMF (`amqp:`)
/// address — such targets receive no DMF messages.
pub fn exchange_of(address: &str) -> Option<String> {
    let rest = address.strip_prefix("amqp:")?;
    let path = match rest.strip_prefix("//") {
        // amqp://vhost/exchange: skip the authority.
        Some(after) => &after[after.find('/')?..],
        None => rest,
    };
    let exchange = percent_decode(path.strip_prefix('/')?);
    (!exchange.is_empty()).then_some(exchange)
}

fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A target name: 1..128 characters after trimming.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() {
        return Err(Invalid::new("name is blank"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(Invalid::new("name is longer than 128 characters"));
    }
    Ok(())
}

/// How an attribute update applies (§3.3); absent means MERGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttributeMode {
    #[default]
    Merge,
    Replace,
    Remove,
}

fn allowed_attribute_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || c.is_ascii_whitespace()
        || "_-!@#$%^&*()+=[]{}|;:'\",.<>/\\?".contains(c)
}

fn validate_attribute_text(what: &str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.chars().count() > max {
        return Err(Invalid::new(format!(
            "attribute {what} {:?} is longer than {max} characters",
            truncate(s, 40)
        )));
    }
    if let Some(c) = s.chars().find(|c| !allowed_attribute_char(*c)) {
        return Err(Invalid::new(format!(
            "attribute {what} {:?} contains the forbidden character {c:?}",
            truncate(s, 40)
        )));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Apply an attribute update to the current attributes, validating every key and value first
/// (nothing is applied when anything is invalid). The quota of 100 attributes is checked only
/// when the count grows, as hawkBit does.
pub fn apply_attribute_update(
    current: &BTreeMap<String, String>,
    update: &BTreeMap<String, Option<String>>,
    mode: AttributeMode,
) -> Result<BTreeMap<String, String>, Invalid> {
    for (key, value) in update {
        if key.is_empty() {
            return Err(Invalid::new("attribute key is empty"));
        }
        validate_attribute_text("key", key, MAX_ATTRIBUTE_KEY)?;
        if let Some(v) = value {
            validate_attribute_text("value", v, MAX_ATTRIBUTE_VALUE)?;
        }
    }
    let next = match mode {
        AttributeMode::Merge => {
            let mut next = current.clone();
            for (key, value) in update {
                match value {
                    Some(v) => next.insert(key.clone(), v.clone()),
                    None => next.remove(key),
                };
            }
            next
        }
        AttributeMode::Replace => update
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect(),
        AttributeMode::Remove => {
            let mut next = current.clone();
            for key in update.keys() {
                next.remove(key);
            }
            next
        }
    };
    if next.len() > current.len() && next.len() > MAX_ATTRIBUTES {
        return Err(Invalid::new(format!(
            "a target may hold at most {MAX_ATTRIBUTES} attributes"
        )));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn upd(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn address_uses_single_slash_for_the_default_vhost() {
        assert_eq!(
            dmf_address("/", "sdk.replyTo").unwrap(),
            "amqp:/sdk.replyTo"
        );
        assert_eq!(
            dmf_address("fleet", "connector.replies").unwrap(),
            "amqp://fleet/connector.replies"
        );
        assert!(dmf_address("/", "").is_err());
        assert!(dmf_address("/", "has space").is_err());
        assert!(dmf_address("/", &"x".repeat(600)).is_err());
    }

    #[test]
    fn exchange_is_recovered_from_both_address_forms() {
        assert_eq!(
            exchange_of("amqp:/sdk.replyTo").as_deref(),
            Some("sdk.replyTo")
        );
        assert_eq!(
            exchange_of("amqp://fleet/connector.replies").as_deref(),
            Some("connector.replies")
        );
        let addr = dmf_address("test-vhost-1", "a/b%c").unwrap();
        assert_eq!(exchange_of(&addr).as_deref(), Some("a/b%c"));
        assert_eq!(exchange_of("http://10.0.0.1"), None);
        assert_eq!(exchange_of("amqp:/"), None);
    }

    #[test]
    fn merge_sets_and_removes_null_keys() {
        let cur = map(&[("a", "1"), ("b", "2")]);
        let next = apply_attribute_update(
            &cur,
            &upd(&[("b", None), ("c", Some("3"))]),
            AttributeMode::Merge,
        )
        .unwrap();
        assert_eq!(next, map(&[("a", "1"), ("c", "3")]));
    }

    #[test]
    fn replace_keeps_exactly_the_given_non_null_keys() {
        let cur = map(&[("a", "1"), ("b", "2")]);
        let next = apply_attribute_update(
            &cur,
            &upd(&[("x", Some("9")), ("y", None)]),
            AttributeMode::Replace,
        )
        .unwrap();
        assert_eq!(next, map(&[("x", "9")]));
    }

    #[test]
    fn remove_ignores_values() {
        let cur = map(&[("a", "1"), ("b", "2")]);
        let next = apply_attribute_update(
            &cur,
            &upd(&[("a", Some("whatever"))]),
            AttributeMode::Remove,
        )
        .unwrap();
        assert_eq!(next, map(&[("b", "2")]));
    }

    #[test]
    fn invalid_keys_and_values_are_rejected_whole() {
        let cur = map(&[]);
        let long = "k".repeat(129);
        assert!(
            apply_attribute_update(&cur, &upd(&[(&long, Some("v"))]), AttributeMode::Merge)
                .is_err()
        );
        assert!(
            apply_attribute_update(&cur, &upd(&[("k", Some(&long))]), AttributeMode::Merge)
                .is_err()
        );
        assert!(
            apply_attribute_update(&cur, &upd(&[("k", Some("a`b"))]), AttributeMode::Merge)
                .is_err()
        );
        assert!(
            apply_attribute_update(&cur, &upd(&[("k~", Some("v"))]), AttributeMode::Merge).is_err()
        );
        assert!(
            apply_attribute_update(&cur, &upd(&[("k", Some("ü"))]), AttributeMode::Merge).is_err()
        );
        assert!(
            apply_attribute_update(&cur, &upd(&[("", Some("v"))]), AttributeMode::Merge).is_err()
        );
        assert!(
            apply_attribute_update(
                &cur,
                &upd(&[("ok key", Some("a-b_c (1.2) /x?"))]),
                AttributeMode::Merge
            )
            .is_ok()
        );
    }

    #[test]
    fn the_quota_applies_only_when_the_count_grows() {
        let full: BTreeMap<String, String> = (0..100)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(
            apply_attribute_update(&full, &upd(&[("new", Some("v"))]), AttributeMode::Merge)
                .is_err()
        );
        assert!(
            apply_attribute_update(&full, &upd(&[("k1", Some("w"))]), AttributeMode::Merge).is_ok()
        );
    }
}
