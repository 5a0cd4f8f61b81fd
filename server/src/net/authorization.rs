//! The one reading of an `Authorization` value, `Bearer <token>`, for every
//! listener: the gRPC port (`authorization` metadata), MCP, A2A, the
//! dashboard and metrics. The scheme is matched in any case (RFC 9110
//! section 11.1: "bearer", "BEARER"), and a refusal says what was wrong:
//! nothing sent, not text, another scheme (named when it is a registered
//! one: a first word that is not may be a token sent without its scheme),
//! or no token after the scheme. A message never quotes the token.

/// Where the value travels, for the refusal's wording.
#[derive(Debug, Clone, Copy)]
pub struct Carrier {
    /// "the Authorization header".
    pub name: &'static str,
    /// What to send instead: "`Authorization: Bearer <token>`".
    pub send: &'static str,
}

/// An HTTP listener's `Authorization` header.
pub const HEADER: Carrier = Carrier {
    name: "the Authorization header",
    send: "`Authorization: Bearer <token>`",
};

/// The gRPC port's `authorization` metadata.
pub const METADATA: Carrier = Carrier {
    name: "the authorization metadata",
    send: "`authorization: Bearer <token>` metadata",
};

/// What is wrong with an `Authorization` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// None was sent.
    Missing,
    /// Bytes that are not visible ASCII text.
    NotText,
    /// Another scheme: `Some(name)` when it is a plain word.
    Scheme(Option<String>),
    /// `Bearer` and nothing after it.
    NoToken,
}

impl Refused {
    /// The refusal's text for `carrier`; a missing value's starts with "no
    /// credentials" (the CLI reads it).
    pub fn message(&self, carrier: Carrier) -> String {
        let Carrier { name, send } = carrier;
        match self {
            Refused::Missing => format!("no credentials: send {send}"),
            Refused::NotText => format!("{name} is not text: send {send}"),
            Refused::Scheme(Some(scheme)) => {
                format!("{name} uses the scheme {scheme:?}, not Bearer: send {send}")
            }
            Refused::Scheme(None) => {
                format!("{name} does not start with the scheme Bearer: send {send}")
            }
            Refused::NoToken => format!("{name} holds no token after Bearer: send {send}"),
        }
    }
}

/// Authorization schemes other than Bearer that a refusal names.
const KNOWN_SCHEMES: &[&str] = &[
    "Basic",
    "Digest",
    "Negotiate",
    "NTLM",
    "OAuth",
    "HOBA",
    "Mutual",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "vapid",
    "AWS4-HMAC-SHA256",
    "DPoP",
    "PrivateToken",
    "Token",
];

/// The token of `value` (`Bearer <token>`, the scheme in any case,
/// surrounding spaces ignored).
pub fn bearer_token(value: Option<&[u8]>) -> Result<&str, Refused> {
    let value = value.ok_or(Refused::Missing)?;
    let value = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
        .ok_or(Refused::NotText)?
        .trim();
    let (scheme, token) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Named only when it is a scheme (IANA's HTTP Authentication
        // Scheme Registry, and `Token`): a first word that is not one may
        // be a token sent without its scheme, never echoed or logged.
        let known = KNOWN_SCHEMES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(scheme));
        return Err(Refused::Scheme(known.map(|k| k.to_string())));
    }
    match token.trim() {
        "" => Err(Refused::NoToken),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_read_in_any_case_and_a_wrong_one_is_named() {
        for value in ["Bearer t", "bearer t", "BEARER  t ", " bEaReR\tt"] {
            assert_eq!(bearer_token(Some(value.as_bytes())), Ok("t"), "{value:?}");
        }
        let refused = |v: Option<&str>| bearer_token(v.map(str::as_bytes)).unwrap_err();
        assert_eq!(refused(None), Refused::Missing);
        assert!(refused(None).message(HEADER).starts_with("no credentials"));
        assert_eq!(
            refused(Some("Basic YTpi")),
            Refused::Scheme(Some("Basic".into()))
        );
        let message = refused(Some("Basic YTpi")).message(METADATA);
        assert!(
            message.contains(r#"scheme "Basic""#) && message.contains("`authorization: Bearer"),
            "{message}"
        );
        // A token pasted without the scheme is not quoted back.
        let token = "ert_0123456789abcdef0123456789abcdef";
        let message = refused(Some(token)).message(HEADER);
        assert_eq!(refused(Some(token)), Refused::Scheme(None));
        assert!(!message.contains("0123456789"), "{message}");
        assert_eq!(refused(Some("Bearer ")), Refused::NoToken);
        assert_eq!(refused(Some("Bearer\u{e9} t")), Refused::NotText);
        // Not `Bearertoken`; and a short token without its scheme (a
        // 16-character metrics token, say) is not named as a scheme.
        for value in ["Bearerxyz", "0123456789abcdef", "my-secret-token"] {
            assert_eq!(refused(Some(value)), Refused::Scheme(None), "{value}");
        }
        assert_eq!(
            refused(Some("basic YTpi")),
            Refused::Scheme(Some("Basic".into()))
        );
    }
}
