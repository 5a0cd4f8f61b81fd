//! Names keyed by tenant: what the scheduler and the store count, queue and
//! look up by, `tenant` + U+001F + the client's name (see [`crate::tenant`]).
//!
//! A key prints ([`Display`](std::fmt::Display)) as the client's name only,
//! so a message built with `{}` never shows a tenant; the whole key takes an
//! explicit [`SessionKey::as_key`].
use std::{fmt, sync::Arc};

use crate::{config::Limits, error::Error, tenant};

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// A key as stored (already tenant-prefixed, or anonymous).
            pub fn from_key(key: impl Into<Arc<str>>) -> Self {
                Self(key.into())
            }

            /// The whole key, tenant prefix included: for maps and the store.
            pub fn as_key(&self) -> &str {
                &self.0
            }

            /// The whole key as the shared string the live state holds.
            pub fn as_arc(&self) -> &Arc<str> {
                &self.0
            }

            /// The client's name.
            pub fn name(&self) -> &str {
                tenant::strip(&self.0)
            }

            /// The tenant ("" when anonymous).
            pub fn tenant(&self) -> &str {
                tenant::of(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("tenant", &self.tenant())
                    .field("name", &self.name())
                    .finish()
            }
        }
    };
}

key_type!(
    /// A session: one agent conversation of one tenant.
    SessionKey
);

key_type!(
    /// A tool of one tenant.
    ToolKey
);

impl SessionKey {
    /// The key of session `name` in `tenant`'s namespace. Errors: an empty
    /// name, one over `limits.max_session_id_bytes`, or one with U+001F.
    pub fn new(tenant: &str, name: &str, limits: &Limits) -> Result<Self, Error> {
        check_session(name, limits)?;
        if name.contains(tenant::SEP) {
            return Err(Error::invalid(
                "session_id may not contain the control character U+001F",
            ));
        }
        Ok(Self(keyed(tenant, name)))
    }
}

impl ToolKey {
    /// The key of tool `name` in `tenant`'s namespace. The name is not
    /// checked: an unknown tool is NOT_FOUND at submit, and a worker's tool
    /// names are checked at registration.
    pub fn new(tenant: &str, name: &str) -> Self {
        Self(keyed(tenant, name))
    }
}

/// One allocation for an anonymous name, as for a `String`.
fn keyed(tenant: &str, name: &str) -> Arc<str> {
    if tenant.is_empty() {
        name.into()
    } else {
        tenant::key(tenant, name).into()
    }
}

/// Checks a session name.
fn check_session(session: &str, limits: &Limits) -> Result<(), Error> {
    let max = limits.max_session_id_bytes;
    let session = tenant::strip(session);
    if session.is_empty() {
        return Err(Error::invalid(
            "session_id is required: name the agent conversation",
        ));
    }
    if session.len() > max {
        return Err(Error::invalid(format!(
            "session_id is {} bytes, the limit is {max}",
            session.len()
        )));
    }
    crate::fields::identifier("session_id", session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_only_the_client_s_name() {
        let limits = Limits::default();
        let s = SessionKey::new("acme", "s1", &limits).unwrap();
        assert_eq!(format!("{s}"), "s1");
        assert_eq!(
            format!("session {s:?}"),
            r#"session SessionKey { tenant: "acme", name: "s1" }"#
        );
        assert_eq!(s.as_key(), tenant::key("acme", "s1"));
        assert_eq!((s.tenant(), s.name()), ("acme", "s1"));
        let t = ToolKey::new("acme", "search");
        assert_eq!(t.to_string(), "search");
        assert_eq!(ToolKey::new("", "search").as_key(), "search");
    }

    #[test]
    fn session_names_are_checked() {
        let limits = Limits::default();
        for bad in ["", "a\u{1f}b", &"x".repeat(129)] {
            assert!(SessionKey::new("acme", bad, &limits).is_err(), "{bad:?}");
        }
    }
}
