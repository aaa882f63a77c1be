//! Where backups go: a storage's typed settings, their checks, and how the helper is told about them.

use brokeforge_core::{Secret, ValidationError, shell_quote, validate};
use brokeforge_store::BackupStorage;
use serde::{Deserialize, Serialize};

use crate::base::PackageError;

/// A storage's settings, by kind. Its secret (S3 secret key, SFTP private key) is sealed apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A directory on one server; only that server's plans may use it.
    Local { server_id: i64, path: String },
    S3 {
        /// `https://host[:port]` (or `http://` for a test network).
        endpoint: String,
        bucket: String,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        path_style: bool,
        access_key_id: String,
    },
    Sftp {
        host: String,
        port: u16,
        user: String,
        path: String,
        /// The key pair BrokeForge generated: this half goes into the SFTP user's authorized_keys.
        public_key: String,
        /// The SFTP server's host key as a known_hosts line, pinned on first use.
        #[serde(default)]
        known_hosts: Option<String>,
        /// The host key fingerprint the user expects (checked on first use).
        #[serde(default)]
        fingerprint: Option<String>,
    },
}

impl StorageConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Local { .. } => "local",
            StorageConfig::S3 { .. } => "s3",
            StorageConfig::Sftp { .. } => "sftp",
        }
    }

    /// The helper's settings for location `url` as `NAME=value` words (quoted; nothing secret).
    pub fn variables(&self, url: &str) -> String {
        let mut vars = vec![
            ("BF_REPO", url.to_string()),
            ("BF_KIND", self.kind().to_string()),
        ];
        match self {
            StorageConfig::Local { .. } => {}
            StorageConfig::S3 {
                region,
                path_style,
                access_key_id,
                ..
            } => {
                vars.push(("BF_S3_KEY_ID", access_key_id.clone()));
                vars.push(("BF_S3_REGION", region.clone().unwrap_or_default()));
                vars.push((
                    "BF_S3_PATH_STYLE",
                    if *path_style { "1" } else { "0" }.into(),
                ));
            }
            StorageConfig::Sftp {
                port,
                known_hosts,
                fingerprint,
                ..
            } => {
                vars.push(("BF_SFTP_PORT", port.to_string()));
                vars.push((
                    "BF_SFTP_KNOWN_HOSTS",
                    known_hosts.clone().unwrap_or_default(),
                ));
                vars.push((
                    "BF_SFTP_FINGERPRINT",
                    fingerprint.clone().unwrap_or_default(),
                ));
            }
        }
        vars.iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Where the storage itself is, as restic names locations (plans' repositories are below it).
    pub fn root(&self) -> String {
        match self {
            StorageConfig::Local { path, .. } => path.clone(),
            StorageConfig::S3 {
                endpoint, bucket, ..
            } => format!("s3:{endpoint}/{bucket}"),
            StorageConfig::Sftp {
                host, user, path, ..
            } => format!("sftp:{user}@{host}:{path}"),
        }
    }

    /// The helper's stdin: a repository password (empty for the storage check), then the storage's secret
    /// (an SFTP key in base64, one line).
    pub fn stdin(&self, password: &str, secret: Option<&Secret>) -> Secret {
        use base64::Engine as _;
        let storage = match (self, secret) {
            (StorageConfig::Sftp { .. }, Some(key)) => {
                base64::engine::general_purpose::STANDARD.encode(key.expose())
            }
            (_, Some(s)) => s.expose().to_string(),
            (_, None) => String::new(),
        };
        Secret::new(format!("{password}\n{storage}\n"))
    }

    pub fn of(storage: &BackupStorage) -> Result<StorageConfig, PackageError> {
        serde_json::from_value(storage.configuration.clone()).map_err(|e| {
            ValidationError::new(
                "storage",
                format!(
                    "backup storage {} has unreadable settings: {e}",
                    storage.name
                ),
            )
            .into()
        })
    }

    /// Checked settings (what `storage add` stores).
    pub fn validated(self) -> Result<StorageConfig, ValidationError> {
        let path = |p: &str| {
            let p = validate::absolute_path("path", p.trim())?;
            Ok::<_, ValidationError>(p.trim_end_matches('/').to_string())
        };
        Ok(match self {
            StorageConfig::Local { server_id, path: p } => StorageConfig::Local {
                server_id,
                path: path(&p)?,
            },
            StorageConfig::S3 {
                endpoint,
                bucket,
                region,
                path_style,
                access_key_id,
            } => {
                let endpoint = endpoint.trim().trim_end_matches('/').to_string();
                let rest = endpoint
                    .strip_prefix("https://")
                    .or_else(|| endpoint.strip_prefix("http://"))
                    .ok_or_else(|| {
                        ValidationError::new(
                            "endpoint",
                            "give the endpoint as https://host[:port] (http:// only on a test network)",
                        )
                    })?;
                let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
                validate::host(host).map_err(|_| {
                    ValidationError::new("endpoint", format!("`{host}` is not a host"))
                })?;
                if !port.is_empty() && port.parse::<u16>().is_err() {
                    return Err(ValidationError::new(
                        "endpoint",
                        format!("`{port}` is not a port"),
                    ));
                }
                let bucket_ok = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)
                    });
                if !bucket_ok {
                    return Err(ValidationError::new(
                        "bucket",
                        "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
                    ));
                }
                let region = region
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty());
                if let Some(r) = &region
                    && !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(ValidationError::new(
                        "region",
                        format!("`{r}` is not a region"),
                    ));
                }
                let key_ok = !access_key_id.is_empty()
                    && access_key_id.len() <= 128
                    && access_key_id.bytes().all(|b| b.is_ascii_graphic());
                if !key_ok {
                    return Err(ValidationError::new(
                        "access_key_id",
                        "give the access key id (printable characters, no spaces)",
                    ));
                }
                StorageConfig::S3 {
                    endpoint,
                    bucket,
                    region,
                    path_style,
                    access_key_id,
                }
            }
            StorageConfig::Sftp {
                host,
                port,
                user,
                path: p,
                public_key,
                known_hosts,
                fingerprint,
            } => {
                let host = validate::host(&host)
                    .map_err(|_| ValidationError::new("host", format!("`{host}` is not a host")))?;
                let user_ok = !user.is_empty()
                    && user.len() <= 32
                    && user
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && !user.starts_with('-');
                if !user_ok {
                    return Err(ValidationError::new(
                        "user",
                        format!("`{user}` is not a user name"),
                    ));
                }
                if port == 0 {
                    return Err(ValidationError::new("port", "give a port from 1 to 65535"));
                }
                let fingerprint = fingerprint
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty());
                if let Some(f) = &fingerprint
                    && !(f.starts_with("SHA256:")
                        && f[7..]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)))
                {
                    return Err(ValidationError::new(
                        "fingerprint",
                        "give the host key fingerprint as SHA256:... (ssh-keygen -lf)",
                    ));
                }
                StorageConfig::Sftp {
                    host,
                    port,
                    user,
                    path: path(&p)?,
                    public_key,
                    known_hosts,
                    fingerprint,
                }
            }
        })
    }
}
