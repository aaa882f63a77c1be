//! The OpenAPI document, generated from the API's operation table: the same table the routes come from.

use serde_json::{Map, Value, json};

use super::common::Op;
use super::contract::Schemas;

pub fn spec(operations: &[Op]) -> Value {
    let mut schemas = Schemas::new();
    let error = schemas.error();
    let mut paths = Map::new();
    for op in operations {
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": if name == "id" { "integer" } else { "string" }}})
            })
            .collect();
        let (status, answer) = match op.answer {
            Some((status, answer)) => (status.to_string(), schemas.response(answer)),
            None => ("200".to_string(), json!({"type": "object"})),
        };
        let mut params = params;
        if let Some(query) = op.query {
            params.extend(schemas.query(query));
        }
        if op.method == "post" && !matches!(op.path, "/login" | "/logout") {
            params.push(json!({
                "name": "Idempotency-Key", "in": "header", "required": false,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Send the request again with the same key (a UUID) after a lost answer: the first answer comes back (Idempotent-Replayed: true) instead of the work running twice; kept a day"
            }));
        }
        // A 204 has no body to describe.
        let ok = match status.as_str() {
            "204" => json!({"description": "Done; no body"}),
            _ => json!({"description": "OK", "content": {"application/json": {"schema": answer}}}),
        };
        let mut responses = json!({
            status: ok,
            "default": {"description": "An error", "content": {"application/json": {"schema": error.clone()}}}
        });
        if let Some((status, also)) = op.also {
            responses[status.to_string()] = json!({"description": "OK", "content": {"application/json": {"schema": schemas.response(also)}}});
        }
        let mut operation = json!({
            "summary": op.summary,
            "tags": [tag(op.path)],
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": []}, {"session": []}],
        });
        if let Some(request) = op.request {
            let mut content = json!({"schema": schemas.request(request)});
            if let Ok(example) = serde_json::from_str::<Value>(op.body) {
                content["example"] = example;
            }
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": content}});
        }
        let path = format!("/api/v1{}", op.path);
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "BrokeForge API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Servers, services, sites, deployments and live events. Authenticate with `Authorization: Bearer <token>` (create one under Account or with `brokeforge admin create-token`)."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE}
            },
            "schemas": schemas.components(),
        }
    })
}

/// The area an operation belongs to, for grouping: a server's areas by name (`/servers/{id}/backups/...` is
/// `backups`), everything else by its first segment; sign-in and the account are `account`.
fn tag(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let area = match segments.as_slice() {
        ["login" | "logout" | "me" | "account", ..] => "account",
        ["openapi.json"] => "meta",
        ["servers", id, area, ..] if id.starts_with('{') => area,
        [first, ..] => first,
        [] => "meta",
    };
    area.replace('-', "_")
}
