//! Who is calling: bearer tokens from the tokens file the operator writes.
//!
//! A token is 32 random bytes (256 bits) shown once, as `ert_` + 64 hex
//! digits. The file keeps only its SHA-256. A fast hash is the right tool for
//! a secret with that much entropy: nobody can guess their way to a preimage,
//! so the slow, salted hashes made for low-entropy passwords would only slow
//! every RPC down. Looking a token up by its hash also leaks nothing through
//! timing that helps an attacker: the hash of a guess says nothing about a
//! real token.
//!
//! The file has one token per line, `key=value` fields separated by spaces,
//! `#` comments and blank lines ignored:
//!
//! ```text
//! sha256=<64 hex> role=agent tenant=acme expires=2027-01-01T00:00:00Z name=ci-agent
//! sha256=<64 hex> role=worker tenant=acme tools=search,fetch
//! sha256=<64 hex> role=admin tenant=ops
//! sha256=<64 hex> role=viewer tenant=acme
//! ```
//!
//! `expires` (RFC 3339, UTC) and `name` are optional; `tools` is optional and
//! only for workers: when present, the worker may register those tools only.
//!
//! Roles: `agent` calls ToolService; `worker` calls WorkerService; `admin`
//! calls ToolService as an agent of its tenant and, on the dashboard, sees
//! every tenant (it cancels and retries its own tenant's tasks only);
//! `viewer` may only look at its tenant on the dashboard.
//!
//! [`expiry`]: streams end when the token that opened them expires.
pub mod expiry;

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{error::Error, tenant};
use sha2::{Digest, Sha256};

/// What a token may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ToolService`: submit, stream, get and cancel tasks.
    Agent,
    /// `WorkerService`: register tools and run tasks.
    Worker,
    /// An agent of its tenant that sees every tenant on the dashboard.
    Admin,
    /// Looks at its tenant on the dashboard; changes nothing, calls no RPC.
    Viewer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Worker => "worker",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Role::Agent),
            "worker" => Some(Role::Worker),
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether a token of this role may call a service that needs `need`:
    /// the same role, or an admin where an agent is needed.
    pub fn may_act_as(self, need: Role) -> bool {
        self == need || (self == Role::Admin && need == Role::Agent)
    }
}

/// The caller of one RPC, as the interceptor ([`crate::grpc::auth`]) found it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// "" when authentication is off.
    pub tenant: Arc<str>,
    /// `None` when authentication is off: anyone may call anything.
    pub role: Option<Role>,
    /// For workers: the only tools they may register, when restricted.
    pub tools: Option<Arc<[String]>>,
    /// A short public ID of the token (a prefix of its hash), for logs and
    /// per-token limits. "" when authentication is off.
    pub token_id: Arc<str>,
    /// When the token stops working; streams it opened end then.
    pub expires: Option<SystemTime>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Caller {
            tenant: "".into(),
            role: None,
            tools: None,
            token_id: "".into(),
            expires: None,
        }
    }

    /// Whether a worker with this token may serve `tool`.
    pub fn may_serve(&self, tool: &str) -> bool {
        self.tools
            .as_ref()
            .is_none_or(|tools| tools.iter().any(|t| t == tool))
    }
}

#[derive(Debug, Clone)]
struct Entry {
    caller: Caller,
    expires: Option<SystemTime>,
}

/// The tokens a server accepts, by hash.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Entry>,
}

impl Tokens {
    /// Reads a tokens file. Errors name the line and what to fix; a file
    /// that group or others may write is refused (whoever can write it can
    /// add an admin token), saying to `chmod 600` it.
    pub fn load(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?
            .permissions()
            .mode();
        if let Some(who) = writable_by_others(mode) {
            return Err(format!(
                "the tokens file {} is writable by {who} (mode {:o}): anyone who can write it \
                 can add a token; run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (hash, entry) = parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            if by_hash.insert(hash, entry).is_some() {
                return Err(format!("line {}: the same token is listed twice", i + 1));
            }
        }
        Ok(Tokens { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The caller a bearer token stands for, at `now`.
    /// Errors: [`Error::Unauthenticated`], saying why.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Caller, Error> {
        let entry = self
            .by_hash
            .get(&hash(token))
            .ok_or_else(|| Error::Unauthenticated("the bearer token is not valid here".into()))?;
        if let Some(expires) = entry.expires
            && now >= expires
        {
            return Err(Error::Unauthenticated(format!(
                "the bearer token expired at {}: ask the operator for a new one",
                humantime::format_rfc3339_seconds(expires)
            )));
        }
        Ok(entry.caller.clone())
    }
}

/// Who besides the owner may write a file of `mode`: "group", "others",
/// "group and others", or `None`.
pub fn writable_by_others(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => None,
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (true, true) => Some("group and others"),
    }
}

/// The fields errand reads on a line.
const FIELDS: &str = "sha256, role, tenant, tools, expires, name";

/// One line of the file. Errors say which field is wrong and why, and never
/// quote a value: the message reaches logs, and a value may be a secret
/// pasted in the wrong place (a token instead of its hash). A key is named
/// when it is short and plain, as no secret is.
fn parse_line(line: &str) -> Result<([u8; 32], Entry), String> {
    let (mut hash, mut role, mut tenant, mut tools, mut expires) = (None, None, None, None, None);
    let mut seen: Vec<&str> = Vec::new();
    for (n, field) in line.split_whitespace().enumerate() {
        let Some((k, v)) = field.split_once('=') else {
            return Err(format!(
                "field {} is not key=value{}",
                n + 1,
                if field.starts_with("ert_") {
                    " (it looks like a token: the file holds the line `errand token new` prints, \
                     sha256=<its hash>, never the token)"
                } else {
                    ""
                }
            ));
        };
        // A key given twice is refused, as an unknown one is: the last value
        // winning would let a stray tail change the role, the tenant or the
        // expiry unseen. Only known keys get here named (no secret is).
        if FIELDS.split(", ").any(|f| f == k) {
            if seen.contains(&k) {
                return Err(format!("{k}= given twice"));
            }
            seen.push(k);
        }
        match k {
            "sha256" => hash = Some(parse_hash(v)?),
            "role" => {
                role = Some(
                    Role::parse(v)
                        .ok_or("the role is unknown: use role=agent, worker, admin or viewer")?,
                )
            }
            "tenant" => {
                tenant::check_name(v).map_err(|_| {
                    "the tenant is invalid: use 1-64 characters of A-Z, a-z, 0-9, '_', '-' and '.'"
                })?;
                tenant = Some(v.to_string());
            }
            "tools" => {
                let list: Vec<String> = v
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect();
                tools = Some(list);
            }
            "expires" => {
                expires = Some(humantime::parse_rfc3339_weak(v).map_err(|e| {
                    format!("expires= is not an RFC 3339 time (2027-01-01T00:00:00Z): {e}")
                })?)
            }
            "name" => {}
            _ if plain_key(k) => return Err(format!("unknown field {k:?}: use {FIELDS}")),
            _ => return Err(format!("field {} has an unknown key: use {FIELDS}", n + 1)),
        }
    }
    let hash = hash.ok_or("sha256=<hex> is missing")?;
    let role = role.ok_or("role= is missing")?;
    let tenant = tenant.ok_or("tenant= is missing")?;
    if tools.is_some() && role != Role::Worker {
        return Err("tools= applies to role=worker only".into());
    }
    let caller = Caller {
        tenant: tenant.into(),
        role: Some(role),
        tools: tools.map(Into::into),
        token_id: hex(&hash[..6]).into(),
        expires,
    };
    Ok((hash, Entry { caller, expires }))
}

/// Whether a key may be quoted in an error: a short word, as field names
/// are, not something pasted.
fn plain_key(k: &str) -> bool {
    (1..=16).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The hash of a `sha256=` value. Errors say what is wrong with it without
/// quoting it.
fn parse_hash(v: &str) -> Result<[u8; 32], String> {
    if v.starts_with("ert_") {
        return Err(
            "sha256= holds a token itself, not its hash: put the line `errand token new` \
             prints in the file (and treat the token as leaked: make a new one)"
                .into(),
        );
    }
    let bad = || {
        format!(
            "sha256= is not 64 hex digits (it has {} characters)",
            v.chars().count()
        )
    };
    if v.len() != 64 || !v.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A new token, to be shown once: `ert_` + 64 hex digits of 32 random bytes.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(format!("ert_{}", hex(&bytes)))
}

/// What `errand token new` asks for.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub role: Role,
    pub tenant: String,
    pub tools: Option<Vec<String>>,
    pub expires: Option<SystemTime>,
    pub name: Option<String>,
}

impl TokenSpec {
    /// The tokens-file line for `token`. Checks what the file would refuse.
    pub fn line(&self, token: &str) -> Result<String, String> {
        tenant::check_name(&self.tenant)?;
        let mut line = format!(
            "sha256={} role={} tenant={}",
            hex(&hash(token)),
            self.role.name(),
            self.tenant
        );
        if let Some(tools) = &self.tools {
            if self.role != Role::Worker {
                return Err("--tools applies to worker tokens only".into());
            }
            for t in tools {
                crate::tools::check_name(t).map_err(|e| e.to_string())?;
            }
            let _ = write!(line, " tools={}", tools.join(","));
        }
        if let Some(expires) = self.expires {
            let _ = write!(
                line,
                " expires={}",
                humantime::format_rfc3339_seconds(expires)
            );
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains('=') {
                return Err("--name must be one word without '='".into());
            }
            let _ = write!(line, " name={name}");
        }
        Ok(line)
    }
}

/// Parses `--expires`: an RFC 3339 time, or a duration from now ("30d", "12h").
pub fn parse_expiry(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => humantime::parse_duration(s)
            .map(|d: Duration| now + d)
            .map_err(|_| {
                format!("--expires {s:?} is neither an RFC 3339 time (2027-01-01T00:00:00Z) nor a duration (30d, 12h)")
            })?,
    };
    Ok(at)
}

/// A warning for a token made already expired (`--expires 0s`, a past
/// time), which the server refuses at its first use; `None` otherwise.
/// A warning, not a refusal: an expired token is what a test of expiry
/// needs.
pub fn expired_warning(expires: SystemTime, now: SystemTime) -> Option<String> {
    (expires <= now).then(|| {
        format!(
            "warning: this token expired already ({}): the server refuses it; give a later \
             --expires to use it",
            humantime::format_rfc3339_seconds(expires)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: Role) -> TokenSpec {
        TokenSpec {
            role,
            tenant: "acme".into(),
            tools: None,
            expires: None,
            name: None,
        }
    }

    #[test]
    fn a_new_token_verifies_and_a_wrong_one_does_not() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 4 + 64);
        let mut s = spec(Role::Worker);
        s.tools = Some(vec!["search".into()]);
        let line = s.line(&token).unwrap();
        assert!(!line.contains(&token), "the file never holds the secret");
        let tokens = Tokens::parse(&format!("# comment\n\n{line}\n")).unwrap();
        let caller = tokens.verify(&token, SystemTime::now()).unwrap();
        assert_eq!(&*caller.tenant, "acme");
        assert_eq!(caller.role, Some(Role::Worker));
        assert!(caller.may_serve("search") && !caller.may_serve("other"));
        let err = tokens.verify("ert_nope", SystemTime::now()).unwrap_err();
        assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    }

    #[test]
    fn admin_and_viewer_roles_parse_and_only_admin_acts_as_an_agent() {
        let (admin, viewer) = (new_token().unwrap(), new_token().unwrap());
        let text = format!(
            "{}\n{}",
            spec(Role::Admin).line(&admin).unwrap(),
            spec(Role::Viewer).line(&viewer).unwrap()
        );
        let tokens = Tokens::parse(&text).unwrap();
        let now = SystemTime::now();
        assert_eq!(tokens.verify(&admin, now).unwrap().role, Some(Role::Admin));
        assert_eq!(
            tokens.verify(&viewer, now).unwrap().role,
            Some(Role::Viewer)
        );
        assert!(Role::Admin.may_act_as(Role::Agent));
        assert!(!Role::Admin.may_act_as(Role::Worker));
        assert!(!Role::Viewer.may_act_as(Role::Agent));
        assert!(!Role::Agent.may_act_as(Role::Admin));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let token = new_token().unwrap();
        let mut s = spec(Role::Agent);
        let now = SystemTime::now();
        s.expires = Some(now + Duration::from_secs(60));
        let tokens = Tokens::parse(&s.line(&token).unwrap()).unwrap();
        assert!(tokens.verify(&token, now).is_ok());
        let err = tokens
            .verify(&token, now + Duration::from_secs(61))
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn bad_lines_name_the_line_and_the_fix() {
        let h = "0".repeat(64);
        for (text, needle) in [
            ("role=agent tenant=a", "sha256"),
            (&format!("sha256={h} role=boss tenant=a") as &str, "role"),
            (&format!("sha256={h} role=agent tenant=a tools=x"), "worker"),
            (&format!("sha256={h} role=agent tenant=a b"), "key=value"),
            (
                &format!("sha256={h} role=agent tenant=a expires=soon"),
                "RFC 3339",
            ),
            ("sha256=zz role=agent tenant=a", "64 hex"),
        ] {
            let err = Tokens::parse(&format!("\n{text}")).unwrap_err();
            assert!(err.starts_with("line 2: ") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_not_overridden() {
        // A stray tail must not turn an agent of acme that expired into a
        // worker of beta that never does: the line is refused.
        let h = "0".repeat(64);
        let line = format!(
            "sha256={h} role=agent tenant=acme expires=2026-01-01T00:00:00Z \
             role=worker tenant=beta expires=2099-01-01T00:00:00Z"
        );
        let err = Tokens::parse(&format!("# tokens\n{line}")).unwrap_err();
        assert_eq!(err, "line 2: role= given twice");
        for key in ["sha256", "tenant", "tools", "expires", "name"] {
            let value = match key {
                "sha256" => h.clone(),
                "expires" => "2027-01-01T00:00:00Z".into(),
                _ => "x".into(),
            };
            let line = format!("sha256={h} role=worker tenant=a {key}={value} {key}={value}");
            let err = Tokens::parse(&line).unwrap_err();
            assert_eq!(err, format!("line 1: {key}= given twice"));
        }
    }

    #[test]
    fn bad_lines_never_quote_a_value_that_may_be_a_secret() {
        // Tokens-file errors reach logs: a pasted token (or any value) must
        // not appear in them, only the line, the key and what is wrong.
        let secret = new_token().unwrap();
        let h = "0".repeat(64);
        let long_key = format!("{secret}x");
        for (text, needle) in [
            (secret.clone(), "not key=value"),
            (
                format!("sha256={h} role=agent tenant=a {secret}"),
                "field 4",
            ),
            (
                format!("sha256={secret} role=agent tenant=a"),
                "token itself",
            ),
            (format!("sha256={h} role={secret} tenant=a"), "role"),
            (format!("sha256={h} role=agent tenant={secret}!"), "tenant"),
            (
                format!("sha256={h} role=agent tenant=a expires={secret}"),
                "RFC 3339",
            ),
            (
                format!("sha256={h} role=agent tenant=a {long_key}=1"),
                "unknown key",
            ),
        ] {
            let err = Tokens::parse(&format!("\n{text}")).unwrap_err();
            assert!(err.starts_with("line 2: ") && err.contains(needle), "{err}");
            assert!(!err.contains(&secret[4..12]), "a value is quoted: {err}");
            assert!(err.len() < 300, "bounded: {err}");
        }
        // 64 bytes that are not 64 ASCII characters: refused, not a panic.
        let wide = format!("sha256=0\u{e9}{} role=agent tenant=a", "0".repeat(61));
        assert!(Tokens::parse(&wide).unwrap_err().contains("64 hex digits"));
        // A key name errand knows nothing of is named, as it is no secret.
        let err = Tokens::parse(&format!("sha256={h} role=agent tenant=a colour=red")).unwrap_err();
        assert!(err.contains(r#"unknown field "colour""#), "{err}");
        assert!(!err.contains("red"), "{err}");
    }

    #[test]
    fn a_tokens_file_others_may_write_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let line = spec(Role::Agent).line(&new_token().unwrap()).unwrap();
        std::fs::write(&path, line).unwrap();
        for (mode, who) in [
            (0o666, "group and others"),
            (0o620, "group"),
            (0o602, "others"),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Tokens::load(&path).unwrap_err();
            assert!(err.contains(&format!("writable by {who}")), "{err}");
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
        }
        // Readable is fine: the file holds hashes, not secrets.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Tokens::load(&path).unwrap().len(), 1);
    }

    #[test]
    fn expiry_takes_a_time_or_a_duration() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_expiry("1d", now).unwrap(),
            now + Duration::from_secs(86400)
        );
        assert!(parse_expiry("2030-01-01T00:00:00Z", now).is_ok());
        assert!(parse_expiry("tomorrow", now).is_err());
        // Expired when made: `token new --expires 0s` made one silently.
        for past in ["0s", "1970-01-01T00:00:00Z"] {
            let at = parse_expiry(past, now).unwrap();
            let warning = expired_warning(at, now).expect("a warning");
            assert!(warning.contains("expired already"), "{past}: {warning}");
        }
        assert!(expired_warning(now + Duration::from_secs(1), now).is_none());
    }
}
