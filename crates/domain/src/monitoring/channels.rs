//! Notification channels: where notices go (webhook signed with HMAC-SHA256, Slack, Discord, Telegram),
//! sealed settings, deliveries with retries and a log.

use std::time::Duration;

use brokeforge_core::time::now_ms;
use brokeforge_core::{Secret, ValidationError};
use brokeforge_store::{Channel, Delivery};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Domain, DomainError, DomainResult};

/// Deliveries: attempts and the waits between them.
const BACKOFF: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(8)];
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The kinds of channel and what each needs.
pub const CHANNEL_KINDS: [&str; 5] = ["webhook", "slack", "discord", "telegram", "email"];

/// The operator's mail relay for email notifications.
pub struct Smtp {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Smtp {
    /// From `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465` (TLS) or
    /// `smtp://host:25` (plain, for a relay on the same network), and the sender address.
    pub fn new(url: &str, from: &str) -> Result<Smtp, ValidationError> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| ValidationError::new("smtp_url", format!("BROKEFORGE_SMTP_URL: {e}")))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from
            .parse()
            .map_err(|e| ValidationError::new("smtp_from", format!("BROKEFORGE_SMTP_FROM: {e}")))?;
        Ok(Smtp { transport, from })
    }

    pub(crate) async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        use lettre::AsyncTransport;
        let to: lettre::message::Mailbox = to.parse().map_err(|e| format!("bad recipient: {e}"))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("the mail relay refused it: {e}"))
    }
}

/// A channel as the user defines it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: String,
    /// webhook, slack, discord: where to post.
    pub url: Option<String>,
    /// webhook: the HMAC-SHA256 key (generated when not given); telegram: the bot token.
    pub secret: Option<String>,
    /// telegram: the chat to write to.
    pub chat_id: Option<String>,
}

/// What is sealed for a channel: everything it needs to send.
#[derive(Debug, Serialize, Deserialize)]
struct ChannelSecret {
    url: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    chat_id: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NewChannel {
    pub channel: Channel,
    /// A webhook's generated signing key, shown once.
    pub signing_secret: Option<String>,
}

/// A notification to send.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// firing | resolved | reminder | test
    pub event: String,
    pub server_id: Option<i64>,
    pub server_name: Option<String>,
    pub rule_id: Option<i64>,
    pub summary: String,
    pub at: String,
}

impl Domain {
    /// plain host, and (when servers must not be internal) not a private address.
    fn check_channel_url(&self, url: &str) -> Result<ureq::http::Uri, ValidationError> {
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|_| ValidationError::new("url", format!("`{url}` is not a URL")))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.allow_http_channels => {}
            Some("http") => {
                return Err(ValidationError::new(
                    "url",
                    "notifications go over https only (the operator may allow http on test networks: BROKEFORGE_ALLOW_HTTP_CHANNELS=1)",
                ));
            }
            _ => return Err(ValidationError::new("url", "give an https:// URL")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ValidationError::new("url", "the URL has no host"))?;
        if url.contains('@') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new(
                "url",
                "the URL may not hold credentials or spaces",
            ));
        }
        if self.refuse_internal_addresses {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if host == "localhost"
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(brokeforge_core::validate::is_internal)
            {
                return Err(ValidationError::new(
                    "url",
                    "notifications may not go to private or loopback addresses",
                ));
            }
        }
        Ok(uri)
    }

    pub async fn add_channel(&self, team_id: i64, spec: &ChannelSpec) -> DomainResult<NewChannel> {
        crate::backups::name("name", &spec.name)?;
        if !CHANNEL_KINDS.contains(&spec.kind.as_str()) {
            return Err(ValidationError::new(
                "kind",
                format!("give one of {}", CHANNEL_KINDS.join(", ")),
            )
            .into());
        }
        let mut signing_secret = None;
        let (sealed, target) = if spec.kind == "email" {
            if self.smtp.is_none() {
                return Err(ValidationError::new(
                    "kind",
                    "email needs a mail relay: the operator sets BROKEFORGE_SMTP_URL and BROKEFORGE_SMTP_FROM",
                )
                .into());
            }
            let to = brokeforge_core::validate::email(spec.url.as_deref().unwrap_or(""))
                .map_err(|_| ValidationError::new("url", "give the email address to write to"))?;
            (
                ChannelSecret {
                    url: format!("mailto:{to}"),
                    secret: None,
                    chat_id: None,
                },
                to,
            )
        } else if spec.kind == "telegram" {
            let token = spec.secret.as_deref().unwrap_or("").trim();
            let chat = spec.chat_id.as_deref().unwrap_or("").trim();
            // Bot tokens are `123456:ABC-...`; chat ids are numbers or @channel names.
            if token.is_empty()
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
            {
                return Err(
                    ValidationError::new("secret", "give the bot token from @BotFather").into(),
                );
            }
            if chat.is_empty()
                || !chat
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_@".contains(&b))
            {
                return Err(ValidationError::new(
                    "chat_id",
                    "give the chat id (a number, or @channelname)",
                )
                .into());
            }
            let base = self
                .telegram_api
                .clone()
                .unwrap_or_else(|| "https://api.telegram.org".into());
            (
                ChannelSecret {
                    url: format!("{base}/bot{token}/sendMessage"),
                    secret: None,
                    chat_id: Some(chat.into()),
                },
                format!("telegram chat {chat}"),
            )
        } else {
            let url = spec
                .url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| ValidationError::new("url", "give the URL to post to"))?;
            let uri = self.check_channel_url(url)?;
            let secret = if spec.kind == "webhook" {
                let s = match spec
                    .secret
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    Some(s) if s.len() < 16 => {
                        return Err(ValidationError::new(
                            "secret",
                            "a signing secret has at least 16 characters",
                        )
                        .into());
                    }
                    Some(s) => s.to_string(),
                    None => {
                        let s =
                            brokeforge_packages::services::database::shared::generate_password()?;
                        signing_secret = Some(s.expose().to_string());
                        s.expose().to_string()
                    }
                };
                Some(s)
            } else {
                None
            };
            // Slack's and Discord's URLs are the secret: show the host only.
            let shown = format!(
                "{}://{}/…",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map(|a| a.as_str()).unwrap_or("")
            );
            (
                ChannelSecret {
                    url: url.into(),
                    secret,
                    chat_id: None,
                },
                shown,
            )
        };
        let secret = Secret::new(
            serde_json::to_string(&sealed).map_err(|e| DomainError::Internal(e.to_string()))?,
        );
        let channel = self
            .store
            .create_channel(team_id, &spec.name, &spec.kind, &target, &secret)
            .await?;
        Ok(NewChannel {
            channel,
            signing_secret,
        })
    }

    pub async fn channels(&self, team_id: i64) -> DomainResult<Vec<Channel>> {
        Ok(self.store.channels(team_id).await?)
    }

    /// A channel of the team by name (or id).
    pub async fn channel_named(&self, team_id: i64, name: &str) -> DomainResult<Channel> {
        self.store
            .channels(team_id)
            .await?
            .into_iter()
            .find(|c| c.name == name || c.id.to_string() == name)
            .ok_or(DomainError::NotFound)
    }

    pub async fn remove_channel(&self, team_id: i64, name: &str) -> DomainResult<()> {
        let channel = self.channel_named(team_id, name).await?;
        self.store.delete_channel(team_id, channel.id).await?;
        Ok(())
    }

    /// Send a test message now and answer with how the delivery went.
    pub async fn test_channel(&self, team_id: i64, name: &str) -> DomainResult<Delivery> {
        let channel = self.channel_named(team_id, name).await?;
        let notice = Notice {
            event: "test".into(),
            server_id: None,
            server_name: None,
            rule_id: None,
            summary: format!("Test message from BrokeForge to channel {}", channel.name),
            at: rfc3339(now_ms()),
        };
        self.deliver(&channel, &notice).await
    }

    pub async fn deliveries(&self, team_id: i64, name: &str) -> DomainResult<Vec<Delivery>> {
        let channel = self.channel_named(team_id, name).await?;
        Ok(self.store.deliveries(channel.id, 100).await?)
    }

    /// Send one notice through one channel, with retries; the delivery log has every outcome.
    pub async fn deliver(&self, channel: &Channel, notice: &Notice) -> DomainResult<Delivery> {
        let delivery = self
            .store
            .start_delivery(channel.id, notice.rule_id, &notice.event)
            .await?;
        let secret = self.store.channel_secret(channel.id).await?;
        let sealed: ChannelSecret = serde_json::from_str(secret.expose())
            .map_err(|e| DomainError::Internal(format!("channel {}: {e}", channel.id)))?;
        let (body, headers) = render(&channel.kind, &sealed, notice, delivery.id)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = match (sealed.url.strip_prefix("mailto:"), &self.smtp) {
                (Some(to), Some(smtp)) => {
                    let subject = format!("[BrokeForge] {}", notice.summary);
                    let text = format!(
                        "{}\n\nEvent: {}\nAt: {}\n",
                        notice.summary, notice.event, notice.at
                    );
                    smtp.send(to, &subject, &text).await
                }
                (Some(_), None) => Err("no mail relay is configured (BROKEFORGE_SMTP_URL)".into()),
                (None, _) => {
                    let url = sealed.url.clone();
                    let (b, h) = (body.clone(), headers.clone());
                    tokio::task::spawn_blocking(move || post(&url, &b, &h))
                        .await
                        .map_err(|e| DomainError::Internal(e.to_string()))?
                }
            };
            match sent {
                Ok(()) => {
                    self.store
                        .record_delivery(delivery.id, attempt, true, None)
                        .await?;
                    break;
                }
                Err(e) if attempt > BACKOFF.len() as i64 => {
                    tracing::warn!(channel = channel.id, error = %e, "notification failed");
                    self.store
                        .record_delivery(delivery.id, attempt, true, Some(&e))
                        .await?;
                    break;
                }
                Err(e) => {
                    self.store
                        .record_delivery(delivery.id, attempt, false, Some(&e))
                        .await?;
                    tokio::time::sleep(BACKOFF[attempt as usize - 1]).await;
                }
            }
        }
        Ok(self.store.delivery(delivery.id).await?)
    }
}

pub(super) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The body and headers a channel kind expects.
fn render(
    kind: &str,
    sealed: &ChannelSecret,
    notice: &Notice,
    delivery_id: i64,
) -> DomainResult<(String, Vec<(String, String)>)> {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let body = match kind {
        "slack" => json!({"text": notice.summary}),
        "discord" => json!({"content": notice.summary}),
        "telegram" => json!({"chat_id": sealed.chat_id, "text": notice.summary}),
        _ => json!({
            "event": notice.event,
            "summary": notice.summary,
            "server": notice.server_id.map(|id| json!({"id": id, "name": notice.server_name})),
            "rule_id": notice.rule_id,
            "delivery_id": delivery_id,
            "at": notice.at,
        }),
    }
    .to_string();
    if let Some(key) = &sealed.secret {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        mac.update(body.as_bytes());
        headers.push((
            "X-BrokeForge-Signature".into(),
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        ));
    }
    headers.push(("X-BrokeForge-Event".into(), notice.event.clone()));
    headers.push(("X-BrokeForge-Delivery".into(), delivery_id.to_string()));
    Ok((body, headers))
}

/// One POST; any 2xx is delivered. Errors say what happened without the URL (it may be the secret).
fn post(url: &str, body: &str, headers: &[(String, String)]) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(SEND_TIMEOUT))
        .max_redirects(0)
        .build()
        .into();
    let mut req = agent.post(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    match req.send(body) {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!(
            "the receiver answered HTTP {}",
            resp.status().as_u16()
        )),
        Err(e) => Err(match e {
            ureq::Error::Timeout(_) => "no answer in time".into(),
            ureq::Error::Io(e) => format!("connection failed: {}", e.kind()),
            ureq::Error::HostNotFound => "host not found".into(),
            ureq::Error::ConnectionFailed => "connection failed".into(),
            other => format!(
                "delivery failed: {}",
                other.to_string().replace(url, "(url)")
            ),
        }),
    }
}
