//! Stored configuration as types: a service record's or a site's `configuration` is a struct, read and
//! written only through [`Configuration`]. Each carries a `version`; a record written by a newer BrokeForge is
//! refused rather than misread (and then overwritten with what this one understood).

use brokeforge_core::ValidationError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub trait Configuration: Serialize + DeserializeOwned + Default {
    /// The shape this build writes; raise it (and upgrade older shapes in [`Configuration::upgrade`]) when the
    /// stored form changes incompatibly.
    const VERSION: u64 = 1;
    /// What the record is, for error messages.
    const WHAT: &'static str;

    /// Turn an older stored shape into the current one (nothing to do while there is only version 1).
    fn upgrade(value: Value, _from: u64) -> Value {
        value
    }

    /// Read a stored configuration; an empty record is the default.
    fn read(value: &Value) -> Result<Self, ValidationError> {
        if value.is_null() || value.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(Self::default());
        }
        let version = value.get("version").and_then(Value::as_u64).unwrap_or(1);
        if version > Self::VERSION {
            return Err(ValidationError::new(
                Self::WHAT,
                format!(
                    "this {} was written by a newer BrokeForge (version {version}, this one reads up to {}): upgrade BrokeForge",
                    Self::WHAT,
                    Self::VERSION
                ),
            ));
        }
        let value = if version < Self::VERSION {
            Self::upgrade(value.clone(), version)
        } else {
            value.clone()
        };
        serde_json::from_value(value).map_err(|e| {
            ValidationError::new(
                Self::WHAT,
                format!("the stored {} is unreadable: {e}", Self::WHAT),
            )
        })
    }

    /// For display: the stored configuration, or the default when it cannot be read (never written back).
    fn read_or_default(value: &Value) -> Self {
        Self::read(value).unwrap_or_default()
    }

    /// The stored form, with its version.
    fn to_value(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("version".into(), Value::from(Self::VERSION));
        }
        v
    }
}

/// The stored configuration of service `name` on a server; the default when the server has no such record.
pub async fn service_config<C: Configuration>(
    store: &brokeforge_store::Store,
    server_id: i64,
    name: &str,
) -> Result<C, super::PackageError> {
    match store
        .services(server_id)
        .await?
        .into_iter()
        .find(|s| s.service_name == name)
    {
        Some(s) => Ok(C::read(&s.configuration)?),
        None => Ok(C::default()),
    }
}
