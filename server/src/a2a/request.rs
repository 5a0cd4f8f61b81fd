//! An A2A message as an errand submit: `message.metadata.skill` names the
//! tool, exactly one `data` part holds the arguments, `context_id` is the
//! session (when absent, derived from `message_id`) and `message_id` the
//! idempotency key.
use a2a::{A2AError, PartContent, SendMessageRequest};
use serde_json::Value;

use crate::agents::Call;

/// The `A2A-Version` this server speaks; any other is refused.
pub const VERSION: &str = "1.0";

/// The metadata key of a message that names its skill (tool).
pub const SKILL_KEY: &str = "skill";

/// Checks the `a2a-version` service parameter (an HTTP header or gRPC
/// metadata). A request without one speaks 0.3, per the A2A spec.
///
/// # Errors
/// `VersionNotSupportedError` (-32009) naming the version sent.
pub fn check_version(params: &a2a_server::ServiceParams) -> Result<(), A2AError> {
    let sent = params
        .get("a2a-version")
        .and_then(|v| v.first())
        .map(String::as_str);
    refused_version(sent).map_or(Ok(()), Err)
}

/// The error for an `A2A-Version` this server does not speak (`None`: the
/// header was not sent, which means 0.3); `None` for [`VERSION`].
pub fn refused_version(sent: Option<&str>) -> Option<A2AError> {
    let sent = sent.map_or("0.3", str::trim);
    (sent != VERSION).then(|| {
        A2AError::new(
            a2a::error_code::VERSION_NOT_SUPPORTED,
            format!(
                "A2A-Version \"{}\" is not supported: this server speaks only {VERSION} \
                 (send the header `A2A-Version: {VERSION}`)",
                crate::logs::field(sent)
            ),
        )
    })
}

/// Middleware on the JSON-RPC route: a request in an `A2A-Version` this
/// server does not speak gets [`refused_version`]'s error, which says what
/// to send (the SDK's router refused it first as "version not supported:
/// 0.3"). Its body is read only then, for the request's id.
pub async fn version_layer(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    if !req.uri().path().starts_with(super::card::JSONRPC_PATH) {
        return next.run(req).await;
    }
    let sent = req
        .headers()
        .get("a2a-version")
        .map(|v| v.to_str().unwrap_or("?"));
    let Some(error) = refused_version(sent) else {
        return next.run(req).await;
    };
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let id = body
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(serde_json::Value::Null);
    axum::Json(serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": error.code, "message": error.message},
    }))
    .into_response()
}

/// What a `SendMessage` asks for.
#[derive(Debug)]
pub struct Submit {
    pub request: Call,
    /// `configuration.return_immediately`.
    pub return_immediately: bool,
}

/// The skill (tool) a message names in `metadata.skill`.
pub fn skill(req: &SendMessageRequest) -> Option<&str> {
    req.message
        .metadata
        .as_ref()
        .and_then(|m| m.get(SKILL_KEY))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The error of a message that names no skill; `skills` are the ones it
/// may name.
pub fn no_skill(skills: &[String]) -> A2AError {
    A2AError::invalid_params(format!(
        "no skill: set message.metadata.skill to one of the agent card's skills: {}",
        known(skills)
    ))
}

/// Turns a `SendMessage` into a submit.
///
/// # Errors
/// -32602 for a missing skill, no or several data parts, or a data part that
/// is not a JSON object; `ContentTypeNotSupportedError` for a text, raw or
/// URL part; `UnsupportedOperationError` for a follow-up message (one naming
/// a task); `PushNotificationNotSupportedError` for a push config.
pub fn submit(req: &SendMessageRequest) -> Result<Submit, A2AError> {
    let message = &req.message;
    if let Some(task) = message.task_id.as_deref().filter(|t| !t.is_empty()) {
        return Err(A2AError::unsupported_operation(format!(
            "follow-up messages are not supported (this one names task {}): each errand task \
             takes one message; send a new message without task_id",
            crate::logs::field(task)
        )));
    }
    let config = req.configuration.as_ref();
    if config.is_some_and(|c| c.task_push_notification_config.is_some()) {
        return Err(push_not_supported());
    }
    let skill = skill(req).ok_or_else(|| no_skill(&[]))?;
    let mut data = None;
    for part in &message.parts {
        match &part.content {
            PartContent::Data(v) if data.is_none() => data = Some(v),
            PartContent::Data(_) => {
                return Err(A2AError::invalid_params(
                    "several data parts: send exactly one data part, the tool's arguments as a JSON object",
                ));
            }
            // The bindings read a part with no content (`"data": null`, a
            // data value left unset) as an empty text.
            PartContent::Text(t) if t.is_empty() => {
                return Err(A2AError::invalid_params(
                    "a part has no content (data: null, or an empty text): send one data part, \
                     the tool's arguments as a JSON object ({} for none)",
                ));
            }
            other => {
                let kind = match other {
                    PartContent::Text(_) => "text",
                    PartContent::Raw(_) => "raw",
                    _ => "url",
                };
                return Err(A2AError::new(
                    a2a::error_code::CONTENT_TYPE_NOT_SUPPORTED,
                    format!(
                        "a {kind} part is not supported: skill `{}` takes one data part, its \
                         arguments as a JSON object (see the card's `urn:errand:tool-schemas:v1` \
                         extension)",
                        crate::logs::field(skill)
                    ),
                ));
            }
        }
    }
    let Some(arguments) = data else {
        return Err(A2AError::invalid_params(
            "no data part: send exactly one data part, the tool's arguments as a JSON object",
        ));
    };
    if !arguments.is_object() {
        return Err(A2AError::invalid_params(
            "the data part must be a JSON object: the tool's arguments by name",
        ));
    }
    let mut arguments = arguments.clone();
    super::numbers::integral(&mut arguments);
    let context = message
        .context_id
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| minted_context(&message.message_id));
    Ok(Submit {
        request: Call {
            session: context,
            tool: skill.to_string(),
            arguments_json: arguments.to_string(),
            idempotency_key: message.message_id.clone(),
        },
        return_immediately: config.and_then(|c| c.return_immediately) == Some(true),
    })
}

/// The context (session) of a message that names none: a UUID derived from
/// its `message_id` (SHA-256, as a version-8 UUID), so the same message sent
/// again lands in the same session and its idempotency key finds the task
/// the first one made. A message without an ID gets a random context.
pub fn minted_context(message_id: &str) -> String {
    if message_id.is_empty() {
        return uuid::Uuid::new_v4().to_string();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"errand a2a context\0")
        .chain_update(message_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub fn push_not_supported() -> A2AError {
    A2AError::new(
        a2a::error_code::PUSH_NOTIFICATION_NOT_SUPPORTED,
        "push notifications are not supported: follow a task with SubscribeToTask \
         (it works after reconnects and restarts) or poll GetTask",
    )
}

fn known(skills: &[String]) -> String {
    if skills.is_empty() {
        "none registered yet (no worker serves a tool)".into()
    } else {
        skills.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use a2a::{Message, Part, Role, SendMessageConfiguration};
    use serde_json::json;

    use super::*;

    fn send(parts: Vec<Part>, skill: Option<&str>) -> SendMessageRequest {
        let mut message = Message::new(Role::User, parts);
        message.message_id = "m1".into();
        message.metadata = skill.map(|s| HashMap::from([(SKILL_KEY.to_string(), json!(s))]));
        SendMessageRequest {
            message,
            configuration: None,
            metadata: None,
            tenant: None,
        }
    }

    #[test]
    fn a_data_part_and_a_skill_make_a_submit() {
        let mut req = send(vec![Part::data(json!({"text": "hi"}))], Some("echo"));
        req.message.context_id = Some("ctx".into());
        req.configuration = Some(SendMessageConfiguration {
            accepted_output_modes: None,
            task_push_notification_config: None,
            history_length: None,
            return_immediately: Some(true),
        });
        let s = submit(&req).unwrap();
        assert_eq!(s.request.tool, "echo");
        assert_eq!(s.request.session, "ctx");
        assert_eq!(s.request.idempotency_key, "m1");
        assert_eq!(s.request.arguments_json, r#"{"text":"hi"}"#);
        assert!(s.return_immediately);
        // No context: one is minted from the message ID, the same each time.
        let minted = submit(&send(vec![Part::data(json!({}))], Some("echo"))).unwrap();
        assert_eq!(minted.request.session.len(), 36);
        let again = submit(&send(vec![Part::data(json!({}))], Some("echo"))).unwrap();
        assert_eq!(again.request.session, minted.request.session);
        assert_ne!(minted_context("m2"), minted.request.session);
    }

    #[test]
    fn bad_messages_are_told_what_to_send() {
        let none = send(vec![Part::data(json!({}))], None);
        assert!(skill(&none).is_none());
        let e = no_skill(&["echo".to_string()]);
        assert_eq!(e.code, a2a::error_code::INVALID_PARAMS);
        assert!(e.message.contains("echo"), "{}", e.message);
        assert_eq!(
            submit(&none).unwrap_err().code,
            a2a::error_code::INVALID_PARAMS
        );
        let e = submit(&send(vec![Part::text("hi")], Some("echo"))).unwrap_err();
        assert_eq!(e.code, a2a::error_code::CONTENT_TYPE_NOT_SUPPORTED);
        assert!(e.message.contains("text part"), "{}", e.message);
        let e = submit(&send(vec![], Some("echo"))).unwrap_err();
        assert_eq!(e.code, a2a::error_code::INVALID_PARAMS);
        let e = submit(&send(vec![Part::data(json!([1]))], Some("echo"))).unwrap_err();
        assert!(e.message.contains("JSON object"), "{}", e.message);
        // What the JSON and gRPC bindings read `{"data": null}` (a data
        // part left unset) as: an empty text part. It was refused as a text
        // part the client never sent.
        let e = submit(&send(vec![Part::text("")], Some("echo"))).unwrap_err();
        assert_eq!(e.code, a2a::error_code::INVALID_PARAMS);
        assert!(e.message.contains("data: null"), "{}", e.message);
        let mut follow_up = send(vec![Part::data(json!({}))], Some("echo"));
        follow_up.message.task_id = Some("t1".into());
        let e = submit(&follow_up).unwrap_err();
        assert_eq!(e.code, a2a::error_code::UNSUPPORTED_OPERATION);
    }

    #[test]
    fn only_version_1_0_is_spoken() {
        let params = |v: &str| HashMap::from([("a2a-version".to_string(), vec![v.to_string()])]);
        check_version(&params("1.0")).unwrap();
        let e = check_version(&params("0.3")).unwrap_err();
        assert_eq!(e.code, a2a::error_code::VERSION_NOT_SUPPORTED);
        assert!(e.message.contains("\"0.3\""), "{}", e.message);
        assert!(check_version(&HashMap::new()).is_err());
    }
}
