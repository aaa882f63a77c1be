//! Which operations are typed, and the schema generators that turn their Rust types into the OpenAPI
//! document's schemas. Routes not listed here yet are documented as objects with an example body.

use schemars::generate::{Contract as Direction, SchemaSettings};
use schemars::transform::ReplaceBoolSchemas;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

use super::types::*;

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
        t("get", "/servers/{id}/sites", None, 200, schema::<SiteList>),
        t(
            "post",
            "/servers/{id}/sites",
            Some(schema::<brokeforge_packages::services::sites::site::SiteRequest>),
            202,
            schema::<SiteQueued>,
        ),
        t("get", "/sites/{id}", None, 200, schema::<SiteResponse>),
        t(
            "post",
            "/sites/{id}/deployments",
            Some(schema::<super::sites::DeployBody>),
            202,
            schema::<DeploymentQueued>,
        ),
        t(
            "post",
            "/sites/{id}/rollback",
            Some(schema::<super::sites::RollbackBody>),
            202,
            schema::<DeploymentQueued>,
        ),
        t(
            "post",
            "/jobs/{id}/cancel",
            None,
            200,
            schema::<JobResponse>,
        ),
    ]
    .into_iter()
    .chain(queued().into_iter().map(|(method, path, request)| TypedOp {
        method,
        path,
        request,
        query: None,
        status: 202,
        response: schema::<JobResponse>,
    }))
    .collect()
}

/// The operations that queue one job and answer `202` with it (their handlers answer `Queued`), with the
/// body each takes.
fn queued() -> Vec<(&'static str, &'static str, Option<SchemaFn>)> {
    use brokeforge_packages::services::database::sql::SchemaRequest;
    use brokeforge_packages::services::server::firewall::RuleSpec;
    use brokeforge_packages::services::sites::certificate::CertificateRequest;
    use brokeforge_packages::services::sites::schedule::SiteTasks;
    let body = |f: SchemaFn| Some(f);
    vec![
        ("post", "/jobs/{id}/retry", None),
        (
            "post",
            "/servers/{id}/services",
            body(schema::<super::servers::InstallBody>),
        ),
        ("delete", "/servers/{id}/services/{name}", None),
        (
            "post",
            "/servers/{id}/databases/schemas",
            body(schema::<SchemaRequest>),
        ),
        (
            "delete",
            "/servers/{id}/databases/schemas/{engine}/{name}",
            None,
        ),
        (
            "post",
            "/servers/{id}/databases/users",
            body(schema::<super::databases::DbUserBody>),
        ),
        (
            "delete",
            "/servers/{id}/databases/users/{engine}/{name}",
            None,
        ),
        ("post", "/servers/{id}/drift", None),
        ("post", "/servers/{id}/firewall", body(schema::<RuleSpec>)),
        ("delete", "/servers/{id}/firewall/{rule}", None),
        (
            "put",
            "/servers/{id}/php/{version}/settings",
            body(schema::<super::php::SettingsBody>),
        ),
        (
            "post",
            "/servers/{id}/php/{version}/extensions",
            body(schema::<super::php::ExtensionsBody>),
        ),
        ("post", "/servers/{id}/backup-storages/{name}/check", None),
        ("post", "/servers/{id}/backups/{plan}/run", None),
        (
            "post",
            "/servers/{id}/backups/{plan}/restore",
            body(schema::<super::backups::RestoreBody>),
        ),
        ("post", "/servers/{id}/backups/{plan}/verify", None),
        ("delete", "/sites/{id}", None),
        (
            "post",
            "/sites/{id}/repository",
            body(schema::<super::sites::RepositoryBody>),
        ),
        (
            "post",
            "/sites/{id}/certificate",
            body(schema::<CertificateRequest>),
        ),
        (
            "post",
            "/sites/{id}/certificate/custom",
            body(schema::<super::sites::CustomCertificate>),
        ),
        ("delete", "/sites/{id}/certificate", None),
        ("put", "/sites/{id}/tasks", body(schema::<SiteTasks>)),
        (
            "put",
            "/sites/{id}/php",
            body(schema::<super::sites::PhpVersionBody>),
        ),
        (
            "put",
            "/sites/{id}/pool",
            body(schema::<super::sites::PoolBody>),
        ),
        (
            "post",
            "/sites/{id}/commands",
            body(schema::<super::sites::CommandBody>),
        ),
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
