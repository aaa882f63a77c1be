//! The API's request and response bodies as types: the handlers build their answers from them, the CLI reads
//! them, and the OpenAPI document's schemas are generated from them (schemars, from the same serde attributes
//! that make the wire format). Routes not in [`contract`] yet are documented as objects with an example.

use brokeforge_store::{Job, Server, ServerService, ServerSite, User};
use schemars::generate::{Contract as Direction, SchemaSettings};
use schemars::transform::ReplaceBoolSchemas;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An error: every non-2xx answer has this shape.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request` (400: not JSON, or fields the route does not take),
    /// `unauthorized`, `bad_credentials`, `two_factor_required` (401), `forbidden` (403), `not_found` (404:
    /// also another team's objects), `conflict`, `cancelled` (409), `invalid_input` (422, with `field`),
    /// `too_many_attempts` (429), `ssh_error`, `command_failed` (502: the server did not do it), `internal`.
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

/// `POST /login`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// For accounts with two-factor sign-in: a code from the app, or a recovery code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A session: send the cookie back, and the CSRF token in `X-CSRF-Token` with every change.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LoginResponse {
    pub user: User,
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UserResponse {
    pub user: User,
}

/// A server with its installed services.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServerEntry {
    pub server: Server,
    pub services: Vec<ServerService>,
}

/// The query of a list's following page: `after` (lists read oldest first) or `before` (newest first), and
/// the same `limit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NextPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    pub limit: i64,
}

/// `GET /servers`: which servers, and the page.
// Not `#[serde(flatten)]` over PageQuery: flattened query strings lose their numbers.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
pub struct ServersQuery {
    /// The `after` of the previous page's `next`.
    pub after: Option<i64>,
    /// Servers per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
    /// Only the server of this name.
    pub name: Option<String>,
    /// Only the servers of this team (its id).
    pub team: Option<i64>,
    /// Only servers whose name or address contains this (case-insensitive), or with this tag.
    pub search: Option<String>,
}

/// A page of servers; `next` is the query of the following page, null at the end.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServerList {
    pub servers: Vec<ServerEntry>,
    pub next: Option<NextPage>,
}

/// A server just added: its one-line provisioning command (empty when BrokeForge onboards it with the
/// root key given), and then the onboarding job.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AddedServer {
    pub server: Server,
    pub script: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServerDetail {
    pub server: Server,
    pub services: Vec<ServerService>,
    pub sites: Vec<ServerSite>,
}

/// A job (a queued one answers `202`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct JobResponse {
    pub job: Job,
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One typed operation: its request body's schema (if it takes one), its success status and answer's schema.
pub struct TypedOp {
    pub method: &'static str,
    pub path: &'static str,
    pub request: Option<SchemaFn>,
    /// The query string's parameters, as one object's properties.
    pub query: Option<SchemaFn>,
    pub status: u16,
    pub response: SchemaFn,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The schema itself, not a reference to it (a query's properties become parameters).
fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// The operations whose bodies are typed, by (method, path) of the route table.
pub fn contract() -> Vec<TypedOp> {
    let t = |method, path, request, status, response| TypedOp {
        method,
        path,
        request,
        query: None,
        status,
        response,
    };
    vec![
        t(
            "post",
            "/login",
            Some(schema::<LoginRequest> as SchemaFn),
            200,
            schema::<LoginResponse>,
        ),
        t("get", "/me", None, 200, schema::<UserResponse>),
        TypedOp {
            query: Some(inline::<ServersQuery>),
            ..t("get", "/servers", None, 200, schema::<ServerList>)
        },
        t(
            "post",
            "/servers",
            Some(schema::<brokeforge_domain::servers::NewServer>),
            201,
            schema::<AddedServer>,
        ),
        t("get", "/servers/{id}", None, 200, schema::<ServerDetail>),
        t("get", "/jobs/{id}", None, 200, schema::<JobResponse>),
        t(
            "post",
            "/jobs/{id}/cancel",
            None,
            200,
            schema::<JobResponse>,
        ),
        t("post", "/jobs/{id}/retry", None, 202, schema::<JobResponse>),
    ]
}

/// Schema generators for the document: requests as they are read, answers as they are written.
pub struct Schemas {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Schemas {
    pub fn new() -> Schemas {
        let settings = |direction| {
            let mut s = SchemaSettings::draft2020_12();
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.contract = direction;
            // Any JSON (`true`) as `{}`: some generators read only object schemas.
            let mut any_as_object = ReplaceBoolSchemas::default();
            any_as_object.skip_additional_properties = true;
            s.transforms.push(Box::new(any_as_object));
            s
        };
        Schemas {
            requests: settings(Direction::Deserialize).into_generator(),
            responses: settings(Direction::Serialize).into_generator(),
        }
    }

    /// A query object's properties as OpenAPI query parameters.
    pub fn query(&mut self, f: SchemaFn) -> Vec<Value> {
        let schema = f(&mut self.requests).to_value();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = schema["properties"].as_object() else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, p)| {
                let mut p = p.clone();
                let description = p
                    .as_object_mut()
                    .and_then(|o| o.remove("description"))
                    .unwrap_or(Value::Null);
                let mut param = serde_json::json!({
                    "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": p,
                });
                if !description.is_null() {
                    param["description"] = description;
                }
                param
            })
            .collect()
    }

    pub fn request(&mut self, f: SchemaFn) -> Value {
        f(&mut self.requests).to_value()
    }

    pub fn response(&mut self, f: SchemaFn) -> Value {
        f(&mut self.responses).to_value()
    }

    pub fn error(&mut self) -> Value {
        schema::<ErrorBody>(&mut self.responses).to_value()
    }

    /// Every named schema the operations referred to, for `components.schemas`.
    pub fn components(mut self) -> Map<String, Value> {
        let mut all = self.responses.take_definitions(true);
        all.extend(self.requests.take_definitions(true));
        all
    }
}

impl Default for Schemas {
    fn default() -> Self {
        Schemas::new()
    }
}
