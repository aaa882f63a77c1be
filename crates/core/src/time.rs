//! Timestamps are stored as Unix milliseconds: portable across SQLite and PostgreSQL. On the API's wire they
//! are RFC 3339 strings in UTC (`2026-11-29T10:50:22.123Z`): fields say so with `#[serde(with = "Rfc3339")]`
//! (or `OptRfc3339`), which both serde and schemars read, so the document says `format: date-time` too.

use std::borrow::Cow;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYYMMDDhhmmss` in UTC: sortable names (release directories, backups).
pub fn utc_stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ms` as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        // Out of chrono's range (hundreds of thousands of years): nothing stored here gets there.
        None => ms.to_string(),
    }
}

/// An RFC 3339 timestamp (any offset) as Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A timestamp read from JSON: an RFC 3339 string, or Unix milliseconds as written before the API used
/// RFC 3339 (stored activity, older clients).
pub fn from_json(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => parse_rfc3339(s).or_else(|| s.parse().ok()),
        _ => None,
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Wire<'a> {
    Ms(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Wire<'_> {
    fn millis<E: serde::de::Error>(self) -> Result<i64, E> {
        match self {
            Wire::Ms(ms) => Ok(ms),
            // Digits are milliseconds: a query string carries numbers as text.
            Wire::Text(s) => parse_rfc3339(&s).or_else(|| s.parse().ok()).ok_or_else(|| {
                E::custom(format!(
                    "`{s}` is not an RFC 3339 timestamp (2026-11-29T10:50:22Z)"
                ))
            }),
        }
    }
}

/// A timestamp field (Unix milliseconds in Rust) written as RFC 3339 and read from RFC 3339 or milliseconds.
/// Used as `#[serde(with = "Rfc3339")]`: serde calls its `serialize`/`deserialize`, schemars its schema.
pub struct Rfc3339;

impl Rfc3339 {
    pub fn serialize<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*ms))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        <Wire as serde::Deserialize>::deserialize(d)?.millis()
    }
}

impl schemars::JsonSchema for Rfc3339 {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, UTC",
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// An optional timestamp field, as `#[serde(default, with = "OptRfc3339")]`: null when absent.
pub struct OptRfc3339;

impl OptRfc3339 {
    pub fn serialize<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match <Option<Wire> as serde::Deserialize>::deserialize(d)? {
            Some(w) => w.millis().map(Some),
            None => Ok(None),
        }
    }
}

impl schemars::JsonSchema for OptRfc3339 {
    fn schema_name() -> Cow<'static, str> {
        "OptionalTimestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "null"],
            "format": "date-time",
            "description": "RFC 3339, UTC",
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamps() {
        assert_eq!(super::utc_stamp(0), "19700101000000");
        assert_eq!(super::utc_stamp(1_795_729_694_000), "20261126214814");
        assert_eq!(super::utc_stamp(951_782_400_000), "20000229000000");
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct At {
        #[serde(with = "super::Rfc3339")]
        at: i64,
        #[serde(default, with = "super::OptRfc3339")]
        done: Option<i64>,
    }

    #[test]
    fn rfc3339_on_the_wire_and_milliseconds_still_read() {
        let v = At {
            at: 1_795_729_694_123,
            done: None,
        };
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, r#"{"at":"2026-11-26T21:48:14.123Z","done":null}"#);
        assert_eq!(serde_json::from_str::<At>(&text).unwrap(), v);
        // Stored before RFC 3339, and another offset.
        let old: At = serde_json::from_str(r#"{"at":1795729694123,"done":1}"#).unwrap();
        assert_eq!((old.at, old.done), (1_795_729_694_123, Some(1)));
        let other: At = serde_json::from_str(r#"{"at":"2026-11-26T22:48:14.123+01:00"}"#).unwrap();
        assert_eq!((other.at, other.done), (1_795_729_694_123, None));
        let bad = serde_json::from_str::<At>(r#"{"at":"yesterday"}"#).unwrap_err();
        assert!(
            bad.to_string().contains("not an RFC 3339 timestamp"),
            "{bad}"
        );
        assert_eq!(
            super::from_json(&serde_json::json!("1970-01-01T00:00:01Z")),
            Some(1000)
        );
        assert_eq!(super::from_json(&serde_json::json!(5)), Some(5));
    }
}
