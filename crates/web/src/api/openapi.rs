//! The OpenAPI document, generated from the API's operation table: the same table the routes come from.

use serde_json::{Map, Value, json};

use super::common::Op;

pub fn spec(operations: &[Op]) -> Value {
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
        let mut operation = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "security": [{"bearer": []}, {"session": []}],
        });
        if !op.body.is_empty() {
            let example: Value = serde_json::from_str(op.body).unwrap_or(Value::Null);
            operation["requestBody"] = json!({
                "content": {"application/json": {"schema": {"type": "object"}, "example": example}}
            });
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
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string", "description": "stable, for programs"},
                    "message": {"type": "string", "description": "for people"},
                    "field": {"type": ["string", "null"]}
                }}}}
            }
        }
    })
}
