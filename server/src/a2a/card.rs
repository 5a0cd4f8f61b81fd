//! The agent card at `/.well-known/agent-card.json`: one skill per tool
//! (`id` = the tool's name), the three bindings served on this port, and
//! the tools' input schemas, which skills cannot carry, in the extension
//! `urn:errand:tool-schemas:v1` (`params`: tool name → JSON Schema; a
//! schema holding a number a protobuf `Struct` would change, such as
//! `"maximum": 18446744073709551615`, is given as its JSON text, a string,
//! since the extended card and the gRPC binding carry `params` as Structs).
//!
//! With tokens configured the card lists the skills of the caller's tenant
//! (send `Authorization: Bearer <token>`); without a valid token it lists
//! none, and says in `securitySchemes` that a bearer token is needed.
use std::collections::HashMap;

use a2a::{
    AgentCapabilities, AgentCard, AgentExtension, AgentInterface, AgentSkill,
    HttpAuthSecurityScheme, SecurityScheme, TRANSPORT_PROTOCOL_GRPC, TRANSPORT_PROTOCOL_HTTP_JSON,
    TRANSPORT_PROTOCOL_JSONRPC,
};
use serde_json::Value;

use crate::{
    agents::ToolListing,
    mcp::convert::{description, input_schema},
};

/// Where the card is served.
pub const PATH: &str = a2a_server::WELL_KNOWN_AGENT_CARD_PATH;
/// The JSON-RPC binding's path.
pub const JSONRPC_PATH: &str = "/jsonrpc";
/// The HTTP+JSON binding's root.
pub const REST_PATH: &str = "/rest";
/// The extension that carries the tools' input schemas.
pub const SCHEMAS_EXTENSION: &str = "urn:errand:tool-schemas:v1";
/// The security scheme's name in the card.
const BEARER: &str = "bearer";

/// The card for `tools`, reached at `base` (`http://host:port`, no slash
/// at the end). `secured`: tokens are configured.
pub fn card(base: &str, tools: &[ToolListing], secured: bool) -> AgentCard {
    let skills = tools
        .iter()
        .map(|t| AgentSkill {
            id: t.name.clone(),
            name: t.name.clone(),
            description: description(&t.description),
            tags: vec!["errand".into()],
            examples: None,
            input_modes: Some(vec!["application/json".into()]),
            output_modes: Some(vec!["application/json".into()]),
            security_requirements: None,
        })
        .collect();
    let schemas: HashMap<String, Value> = tools
        .iter()
        .map(|t| {
            let schema = Value::Object(input_schema(&t.input_schema_json));
            let schema = if super::numbers::fits_struct(&schema) {
                schema
            } else {
                Value::String(schema.to_string())
            };
            (t.name.clone(), schema)
        })
        .collect();
    let (security_schemes, security_requirements) = if secured {
        (
            Some(HashMap::from([(
                BEARER.to_string(),
                SecurityScheme::HttpAuth(HttpAuthSecurityScheme {
                    scheme: "Bearer".into(),
                    description: Some(
                        "an errand agent or admin token (`errand token new --role agent`)".into(),
                    ),
                    bearer_format: None,
                }),
            )])),
            Some(vec![HashMap::from([(BEARER.to_string(), Vec::new())])]),
        )
    } else {
        (None, None)
    };
    AgentCard {
        name: "errand".into(),
        description: "Asynchronous tools served by errand's workers: each message runs one tool \
                      (message.metadata.skill) with one data part as its arguments, as a durable \
                      task that survives restarts."
            .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        supported_interfaces: vec![
            AgentInterface::new(format!("{base}{JSONRPC_PATH}"), TRANSPORT_PROTOCOL_JSONRPC),
            AgentInterface::new(format!("{base}{REST_PATH}"), TRANSPORT_PROTOCOL_HTTP_JSON),
            AgentInterface::new(base, TRANSPORT_PROTOCOL_GRPC),
        ],
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: Some(vec![AgentExtension {
                uri: SCHEMAS_EXTENSION.into(),
                description: Some("Each skill's input JSON Schema, by skill id".into()),
                required: Some(false),
                params: Some(schemas),
            }]),
            extended_agent_card: Some(false),
        },
        default_input_modes: vec!["application/json".into()],
        default_output_modes: vec!["application/json".into()],
        skills,
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes,
        security_requirements,
        signatures: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_and_schemas_come_from_the_tools() {
        let tools = [ToolListing {
            name: "echo".into(),
            description: "Echoes.".into(),
            input_schema_json: r#"{"type":"object","required":["text"]}"#.into(),
        }];
        let card = card("http://127.0.0.1:7000", &tools, false);
        assert_eq!(card.skills[0].id, "echo");
        assert_eq!(card.skills[0].description, "Echoes.");
        let urls: Vec<_> = card
            .supported_interfaces
            .iter()
            .map(|i| (i.protocol_binding.as_str(), i.wire_url()))
            .collect();
        assert_eq!(
            urls,
            [
                ("JSONRPC", "http://127.0.0.1:7000/jsonrpc".to_string()),
                ("HTTP+JSON", "http://127.0.0.1:7000/rest".to_string()),
                ("GRPC", "127.0.0.1:7000".to_string()),
            ]
        );
        let ext = &card.capabilities.extensions.as_ref().unwrap()[0];
        assert_eq!(ext.uri, SCHEMAS_EXTENSION);
        assert_eq!(ext.params.as_ref().unwrap()["echo"]["required"][0], "text");
        assert_eq!(card.capabilities.streaming, Some(true));
        assert_eq!(card.capabilities.push_notifications, Some(false));
        assert!(card.security_schemes.is_none());
        let wide = [ToolListing {
            name: "ids".into(),
            description: String::new(),
            input_schema_json: r#"{"type":"integer","maximum":18446744073709551615}"#.into(),
        }];
        let card = self::card("http://h:1", &wide, false);
        let ext = &card.capabilities.extensions.as_ref().unwrap()[0];
        let text = ext.params.as_ref().unwrap()["ids"].as_str().unwrap();
        assert!(text.contains("18446744073709551615"), "{text}");
        assert!(
            self::card("http://h:1", &[], true)
                .security_schemes
                .is_some()
        );
    }
}
