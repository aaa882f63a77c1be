//! Deploy webhooks. A site's webhook has two secrets: an unguessable id in its URL (which only finds the
//! site) and a signing secret the caller proves it knows, the way the provider the site chose does it:
//! GitHub signs the body (`X-Hub-Signature-256`), GitLab sends the secret (`X-Gitlab-Token`), anything else
//! sends it as `X-BrokeForge-Token`. A request from another provider, or without its proof, changes nothing.
//! A delivery id already handled (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, `X-BrokeForge-Delivery`) is
//! answered and ignored, and a push while a deployment of the site is still queued joins that deployment.

use brokeforge_core::{Secret, ValidationError};
use brokeforge_store::{Deployment, Job, ServerSite, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::common::{webhook_secret, webhook_signing_secret};
use super::config::SiteConfig;
pub use super::config::WebhookSource;
use super::deployment;
use crate::base::PackageError;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Unknown site or wrong URL id: answered like a missing page.
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
    /// A deployment of the site was queued already: the push joins it.
    Joined(Box<Deployment>),
    /// Authenticated but nothing to do (a ping, a push to another branch, a delivery handled before).
    Ignored(String),
}

/// A new random secret: 48 hex characters.
fn random_secret() -> Result<Secret, PackageError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| ValidationError::new("webhook", format!("no randomness: {e}")))?;
    Ok(Secret::new(hex::encode(bytes)))
}

/// The site's sealed secret `name`, created on first use.
async fn site_secret(store: &Store, site: &ServerSite, name: &str) -> Result<Secret, PackageError> {
    if let Some(t) = store.service_secret(site.server_id, name).await? {
        return Ok(t);
    }
    let secret = random_secret()?;
    store
        .put_service_secret(site.server_id, name, &secret)
        .await?;
    Ok(secret)
}

/// The id in the site's webhook URL (created on first use): it finds the site, it proves nothing.
pub async fn webhook_token(store: &Store, site: &ServerSite) -> Result<Secret, PackageError> {
    site_secret(store, site, &webhook_secret(site.id)).await
}

/// The secret the caller proves it knows (GitHub's webhook secret, GitLab's secret token, the
/// `X-BrokeForge-Token` of any other caller); created on first use.
pub async fn signing_secret(store: &Store, site: &ServerSite) -> Result<Secret, PackageError> {
    site_secret(store, site, &webhook_signing_secret(site.id)).await
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

/// The header a provider sends a delivery's id in.
fn delivery_header(provider: WebhookSource) -> &'static str {
    match provider {
        WebhookSource::GitHub => "x-github-delivery",
        WebhookSource::GitLab => "x-gitlab-event-uuid",
        WebhookSource::Generic => "x-brokeforge-delivery",
    }
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Check one request against the provider the site chose. `header` looks a header up by lower-case name.
/// Returns the pushed branch (if the payload names one) and whether it was a ping.
pub fn verify(
    provider: WebhookSource,
    secret: &Secret,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<(Option<String>, bool), WebhookError> {
    match provider {
        WebhookSource::GitHub => {
            if header("x-github-event").is_none() {
                return Err(WebhookError::Unauthorized(
                    "this site's webhook is for GitHub: the request is not from GitHub",
                ));
            }
            let sig = header("x-hub-signature-256").ok_or(WebhookError::Unauthorized(
                "missing X-Hub-Signature-256: set the webhook secret on GitHub",
            ))?;
            let hex_sig = sig
                .strip_prefix("sha256=")
                .ok_or(WebhookError::Unauthorized("malformed X-Hub-Signature-256"))?;
            let given = hex::decode(hex_sig)
                .map_err(|_| WebhookError::Unauthorized("malformed X-Hub-Signature-256"))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .map_err(|_| WebhookError::Unauthorized("bad key"))?;
            mac.update(body);
            if mac.verify_slice(&given).is_err() {
                return Err(WebhookError::Unauthorized("signature does not match"));
            }
        }
        WebhookSource::GitLab => {
            if header("x-gitlab-event").is_none() {
                return Err(WebhookError::Unauthorized(
                    "this site's webhook is for GitLab: the request is not from GitLab",
                ));
            }
            let t = header("x-gitlab-token").ok_or(WebhookError::Unauthorized(
                "missing X-Gitlab-Token: set the secret token on GitLab",
            ))?;
            if !eq(t.as_bytes(), secret.expose().as_bytes()) {
                return Err(WebhookError::Unauthorized("token does not match"));
            }
        }
        WebhookSource::Generic => {
            let t = header("x-brokeforge-token").ok_or(WebhookError::Unauthorized(
                "missing X-BrokeForge-Token: send the webhook's secret in it",
            ))?;
            if !eq(t.as_bytes(), secret.expose().as_bytes()) {
                return Err(WebhookError::Unauthorized("token does not match"));
            }
        }
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
    Ok((branch, ping))
}

/// Handle a webhook call for site `site_id` with URL id `token`.
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
    let url_id = store
        .service_secret(site.server_id, &webhook_secret(site.id))
        .await
        .map_err(PackageError::from)?
        .ok_or(WebhookError::NotFound)?;
    if !eq(token.as_bytes(), url_id.expose().as_bytes()) {
        return Err(WebhookError::NotFound);
    }
    let config = SiteConfig::of(&site);
    let provider = config.webhook_provider;
    let secret = store
        .service_secret(site.server_id, &webhook_signing_secret(site.id))
        .await
        .map_err(PackageError::from)?
        .ok_or(WebhookError::Unauthorized(
            "the webhook has no secret yet: open the site's webhook settings in BrokeForge",
        ))?;
    let delivery = header(delivery_header(provider));
    let (branch, ping) = verify(provider, &secret, header, body)?;
    if ping {
        return Ok(WebhookOutcome::Ignored("pong".into()));
    }
    if let Some(id) = delivery.as_deref().map(str::trim).filter(|d| !d.is_empty())
        && !store
            .record_webhook_delivery(site.id, &id.chars().take(200).collect::<String>())
            .await
            .map_err(PackageError::from)?
    {
        return Ok(WebhookOutcome::Ignored(format!(
            "delivery {id} was handled already"
        )));
    }
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
    // A flood of pushes is one deployment: a deploy still waiting in the queue fetches the newest commit.
    if let Some(waiting) = store
        .queued_deployment(site.id)
        .await
        .map_err(PackageError::from)?
    {
        return Ok(WebhookOutcome::Joined(Box::new(waiting)));
    }
    let queued = deployment::deploy(
        store,
        &site,
        None,
        &format!("webhook:{}", provider.as_str()),
    )
    .await?;
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
        let secret = Secret::new("s3cret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let (branch, ping) = verify(
            WebhookSource::GitHub,
            &secret,
            headers(&[("x-github-event", "push"), ("x-hub-signature-256", &good)]),
            body,
        )
        .unwrap();
        assert_eq!((branch.as_deref(), ping), (Some("main"), false));
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
            // Leaving the event out does not turn the request into an unsigned one.
            vec![("x-hub-signature-256", good.as_str())],
            vec![],
        ] {
            assert!(matches!(
                verify(WebhookSource::GitHub, &secret, headers(&h), body),
                Err(WebhookError::Unauthorized(_))
            ));
        }
        // The body is covered by the signature.
        assert!(
            verify(
                WebhookSource::GitHub,
                &secret,
                headers(&[("x-github-event", "push"), ("x-hub-signature-256", &good)]),
                br#"{"ref":"refs/heads/evil"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn gitlab_and_generic_need_their_own_proof() {
        let secret = Secret::new("s3cret");
        let body = br#"{"ref":"refs/heads/dev"}"#;
        let gitlab =
            |pairs: &[(&str, &str)]| verify(WebhookSource::GitLab, &secret, headers(pairs), body);
        assert!(gitlab(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "nope")]).is_err());
        assert!(gitlab(&[("x-gitlab-token", "s3cret")]).is_err());
        let (branch, _) = gitlab(&[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "s3cret"),
        ])
        .unwrap();
        assert_eq!(branch.as_deref(), Some("dev"));
        // A plain POST needs the secret too; a GitLab-style token is not it.
        assert!(verify(WebhookSource::Generic, &secret, headers(&[]), b"").is_err());
        assert!(
            verify(
                WebhookSource::Generic,
                &secret,
                headers(&[("x-gitlab-token", "s3cret")]),
                b""
            )
            .is_err()
        );
        let (branch, _) = verify(
            WebhookSource::Generic,
            &secret,
            headers(&[("x-brokeforge-token", "s3cret")]),
            b"",
        )
        .unwrap();
        assert_eq!(branch, None);
        // Another provider's request is refused whatever it carries.
        assert!(
            verify(
                WebhookSource::GitHub,
                &secret,
                headers(&[
                    ("x-gitlab-event", "Push Hook"),
                    ("x-gitlab-token", "s3cret")
                ]),
                body
            )
            .is_err()
        );
    }
}
