//! Tenant namespaces for the names the scheduler keys by.
//!
//! The handlers turn a client's session or tool name into a key, `tenant` +
//! U+001F + `name`, on the way in, and [`strip`] takes the tenant off again
//! wherever a name goes back on the wire or into a message. The store keeps
//! keys as it would keep names; the scheduler reads the tenant of a key to
//! count a tenant's pending tasks and to list only its tools. Two tenants' sessions and tools are therefore different
//! keys: their queues, pending counts, completion logs and tool schemas never
//! meet, and store schemas stay as they are. The anonymous tenant (auth off)
//! is the empty string and adds no prefix, so a server that had no auth keeps
//! its data unchanged.

/// Separates a tenant from a name in a key. Clients may not use it in names.
pub const SEP: char = '\u{1f}';

/// The key of `name` in `tenant`'s namespace.
pub fn key(tenant: &str, name: &str) -> String {
    if tenant.is_empty() {
        name.to_string()
    } else {
        format!("{tenant}{SEP}{name}")
    }
}

/// The tenant and the client's name in a key.
pub fn split(key: &str) -> (&str, &str) {
    key.split_once(SEP).unwrap_or(("", key))
}

/// The client's name in a key: what goes back on the wire.
pub fn strip(key: &str) -> &str {
    split(key).1
}

/// The tenant of a key ("" when anonymous).
pub fn of(key: &str) -> &str {
    split(key).0
}

/// Checks a tenant name an operator writes in the tokens file.
pub fn check_name(tenant: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant {tenant:?} is invalid: use 1-64 characters of A-Z, a-z, 0-9, '_', '-' and '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_anonymous_adds_nothing() {
        assert_eq!(key("", "s1"), "s1");
        let k = key("acme", "s1");
        assert_eq!(split(&k), ("acme", "s1"));
        assert_eq!(strip(&k), "s1");
        assert_eq!(of(&k), "acme");
        assert_eq!(strip("plain"), "plain");
        assert_ne!(key("a", "s"), key("b", "s"));
        assert!(check_name("acme-1.prod").is_ok());
        assert!(check_name("").is_err() && check_name("a b").is_err());
    }
}
