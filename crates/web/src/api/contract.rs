//! The schema generators that turn the route table's request and answer types (`super::operations`) into
//! the OpenAPI document's schemas. Routes without types yet are documented as objects with an example body.

use schemars::generate::{Contract as Direction, SchemaSettings};
use schemars::transform::ReplaceBoolSchemas;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

use super::types::*;

/// Makes a type's schema in a generator: one per typed request body, query or answer of the route table.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A reference to the type's schema (which goes into `components.schemas`).
pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The schema itself, not a reference to it (a query's properties become parameters).
pub fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
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
