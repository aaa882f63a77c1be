//! Deploy webhooks: a per-site secret URL that GitHub (HMAC `X-Hub-Signature-256`), GitLab (`X-Gitlab-Token`)
//! or any tool (a plain POST) calls to deploy. A request that fails a check changes nothing.

use brokeforge_core::{Secret, ValidationError};
use brokeforge_store::{Deployment, Job, ServerSite, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::common::webhook_secret;
use super::config::SiteConfig;
use super::deployment;
use crate::base::PackageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookSource {
    GitHub,
    GitLab,
    Generic,
}

impl WebhookSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookSource::GitHub => "github",
            WebhookSource::GitLab => "gitlab",
            WebhookSource::Generic => "generic",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Unknown site or wrong URL token: answered like a missing page.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Package(#[from] PackageError),
}

#[derive(Debug)]
pub enum WebhookOutcome {
    Deployed(Box<(Deployment, Job)>),
    /// Authenticated but nothing to do (a ping, or a push to another branch).
    Ignored(String),
}

/// The site's webhook token (created on first use), also the HMAC key GitHub signs with and the token
/// GitLab sends.
pub async fn webhook_token(store: &Store, site: &ServerSite) -> Result<Secret, PackageError> {
    let name = webhook_secret(site.id);
    if let Some(t) = store.service_secret(site.server_id, &name).await? {
        return Ok(t);
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| ValidationError::new("webhook", format!("no randomness: {e}")))?;
    let token = Secret::new(hex::encode(bytes));
    store
        .put_service_secret(site.server_id, &name, &token)
        .await?;
    Ok(token)
}

/// The path of the site's webhook (append it to the panel's public URL).
pub async fn webhook_path(store: &Store, site: &ServerSite) -> Result<Secret, PackageError> {
    let token = webhook_token(store, site).await?;
    Ok(Secret::new(format!(
        "/hooks/sites/{}/deploy/{}",
        site.id,
        token.expose()
    )))
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Check one request. `header` looks a header up by lower-case name. Returns where it came from and the
/// pushed branch, if the payload names one.
pub fn verify(
    token: &Secret,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<(WebhookSource, Option<String>, bool), WebhookError> {
    let source = if header("x-github-event").is_some() {
        WebhookSource::GitHub
    } else if header("x-gitlab-event").is_some() {
        WebhookSource::GitLab
    } else {
        WebhookSource::Generic
    };
    match source {
        WebhookSource::GitHub => {
            let sig = header("x-hub-signature-256").ok_or(WebhookError::Unauthorized(
                "missing X-Hub-Signature-256: set the webhook secret on GitHub",
            ))?;
            let hex_sig = sig
                .strip_prefix("sha256=")
                .ok_or(WebhookError::Unauthorized("malformed X-Hub-Signature-256"))?;
            let given = hex::decode(hex_sig)
                .map_err(|_| WebhookError::Unauthorized("malformed X-Hub-Signature-256"))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes())
                .map_err(|_| WebhookError::Unauthorized("bad key"))?;
            mac.update(body);
            if mac.verify_slice(&given).is_err() {
                return Err(WebhookError::Unauthorized("signature does not match"));
            }
        }
        WebhookSource::GitLab => {
            let t = header("x-gitlab-token").ok_or(WebhookError::Unauthorized(
                "missing X-Gitlab-Token: set the secret token on GitLab",
            ))?;
            if !eq(t.as_bytes(), token.expose().as_bytes()) {
                return Err(WebhookError::Unauthorized("token does not match"));
            }
        }
        // The secret URL itself authenticates a plain POST.
        WebhookSource::Generic => {}
    }
    let ping = header("x-github-event").as_deref() == Some("ping");
    let json: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| WebhookError::BadRequest(format!("the body is not JSON: {e}")))?
    };
    let branch = json
        .get("ref")
        .and_then(|r| r.as_str())
        .map(|r| r.strip_prefix("refs/heads/").unwrap_or(r).to_string())
        .or_else(|| {
            json.get("branch")
                .and_then(|b| b.as_str())
                .map(str::to_string)
        });
    Ok((source, branch, ping))
}

/// Handle a webhook call for site `site_id` with URL token `token`.
pub async fn handle(
    store: &Store,
    site_id: i64,
    token: &str,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<WebhookOutcome, WebhookError> {
    let site = match store.site(site_id).await {
        Ok(s) => s,
        Err(brokeforge_store::StoreError::NotFound(_)) => return Err(WebhookError::NotFound),
        Err(e) => return Err(PackageError::from(e).into()),
    };
    let stored = store
        .service_secret(site.server_id, &webhook_secret(site.id))
        .await
        .map_err(PackageError::from)?
        .ok_or(WebhookError::NotFound)?;
    if !eq(token.as_bytes(), stored.expose().as_bytes()) {
        return Err(WebhookError::NotFound);
    }
    let (source, branch, ping) = verify(&stored, header, body)?;
    if ping {
        return Ok(WebhookOutcome::Ignored("pong".into()));
    }
    let config = SiteConfig::of(&site);
    let repo = config.repository.as_ref().ok_or_else(|| {
        WebhookError::BadRequest("the site has no git repository to deploy".into())
    })?;
    if let Some(b) = &branch
        && *b != repo.branch
    {
        return Ok(WebhookOutcome::Ignored(format!(
            "push to {b} ignored: the site deploys {}",
            repo.branch
        )));
    }
    let queued =
        deployment::deploy(store, &site, None, &format!("webhook:{}", source.as_str())).await?;
    Ok(WebhookOutcome::Deployed(Box::new(queued)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn github_signatures() {
        let token = Secret::new("s3cret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let (src, branch, ping) = verify(
            &token,
            headers(&[("x-github-event", "push"), ("x-hub-signature-256", &good)]),
            body,
        )
        .unwrap();
        assert_eq!(
            (src, branch.as_deref(), ping),
            (WebhookSource::GitHub, Some("main"), false)
        );
        let bad = good.replace('a', "b");
        for h in [
            vec![
                ("x-github-event", "push"),
                ("x-hub-signature-256", bad.as_str()),
            ],
            vec![("x-github-event", "push")],
            vec![
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha1=00"),
            ],
        ] {
            assert!(matches!(
                verify(&token, headers(&h), body),
                Err(WebhookError::Unauthorized(_))
            ));
        }
        // The body is covered by the signature.
        assert!(
            verify(
                &token,
                headers(&[("x-github-event", "push"), ("x-hub-signature-256", &good)]),
                br#"{"ref":"refs/heads/evil"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn gitlab_and_generic() {
        let token = Secret::new("s3cret");
        let body = br#"{"ref":"refs/heads/dev"}"#;
        assert!(
            verify(
                &token,
                headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "nope")]),
                body
            )
            .is_err()
        );
        let (src, branch, _) = verify(
            &token,
            headers(&[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", "s3cret"),
            ]),
            body,
        )
        .unwrap();
        assert_eq!(
            (src, branch.as_deref()),
            (WebhookSource::GitLab, Some("dev"))
        );
        let (src, branch, _) = verify(&token, headers(&[]), b"").unwrap();
        assert_eq!((src, branch), (WebhookSource::Generic, None));
    }
}
