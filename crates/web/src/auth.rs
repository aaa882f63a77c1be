//! Authentication: Argon2id passwords, cookie sessions with a CSRF token, personal API tokens (bearer), and
//! login throttling kept in the database so it holds across nodes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use brokeforge_core::time::now_ms;
use brokeforge_store::{Store, User};
use sha2::Digest;

use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "bf_session";
/// Sessions last a week.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Failed logins allowed per email (and, more loosely, per client address) in the window.
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 30;
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60 * 1000;
pub const MIN_PASSWORD_LEN: usize = 10;

pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A random token: `prefix` + 40 hex characters.
pub fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 20];
    getrandom::fill(&mut b).expect("the system's random source");
    format!("{prefix}{}", hex::encode(b))
}

pub fn check_password_rules(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::invalid(
            "password",
            format!("use at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::invalid("password", "at most 1024 bytes"));
    }
    Ok(())
}

/// Argon2id with the crate's default (OWASP) parameters, as a PHC string.
pub async fn hash_password(password: &str) -> Result<String, ApiError> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| {
        tracing::error!(error = %e, "hashing a password failed");
        ApiError::internal()
    })
}

pub async fn verify_password(password: &str, hash: &str) -> bool {
    let (pw, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Check the throttle for a login, then the password. Every outcome is recorded.
pub async fn login(
    store: &Store,
    email: &str,
    password: &str,
    address: &str,
) -> Result<User, ApiError> {
    let email = email.trim().to_ascii_lowercase();
    let since = now_ms() - THROTTLE_WINDOW_MS;
    let by_email = format!("email:{email}");
    let by_address = format!("addr:{address}");
    for (key, max) in [
        (&by_email, MAX_FAILURES_PER_EMAIL),
        (&by_address, MAX_FAILURES_PER_ADDRESS),
    ] {
        let (failures, oldest) = store.login_failures(key, since).await?;
        if failures >= max {
            let wait_min = oldest
                .map(|o| ((o + THROTTLE_WINDOW_MS - now_ms()) / 60_000).max(1))
                .unwrap_or(15);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed sign-ins; try again in {wait_min} minutes"),
            ));
        }
    }
    let user = store.user_by_email(&email).await?;
    // Unknown users are checked against a real hash too, so timing does not reveal who exists.
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let dummy = DUMMY
        .get_or_try_init(|| hash_password("not a password of anybody"))
        .await?;
    let ok = verify_password(password, user.as_ref().map_or(dummy, |u| &u.password_hash)).await;
    match user {
        Some(u) if ok => {
            store.record_login_attempt(&by_email, true).await?;
            Ok(u)
        }
        _ => {
            store.record_login_attempt(&by_email, false).await?;
            store.record_login_attempt(&by_address, false).await?;
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong email or password",
            ))
        }
    }
}

/// Start a session; returns the cookie value (the token) and the CSRF token.
pub async fn start_session(store: &Store, user_id: i64) -> Result<(String, String), ApiError> {
    let token = random_token("");
    let csrf = random_token("");
    store
        .create_session(user_id, &sha256_hex(&token), &csrf, SESSION_TTL_MS)
        .await?;
    Ok((token, csrf))
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
}

/// The signed-in user of a request: from a bearer token or the session cookie.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: User,
    pub via: Via,
    /// The session's CSRF token (empty for bearer tokens).
    pub csrf: String,
    pub session_hash: Option<String>,
}

impl Authed {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.is_admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("only an administrator may do this"))
        }
    }
}

pub async fn authenticate(store: &Store, parts: &Parts) -> Result<Option<Authed>, ApiError> {
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?
            .trim();
        let user = store
            .api_token_user(&sha256_hex(token))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this API token is unknown or revoked",
                )
            })?;
        return Ok(Some(Authed {
            user,
            via: Via::Token,
            csrf: String::new(),
            session_hash: None,
        }));
    }
    if let Some(token) = cookie(parts, SESSION_COOKIE) {
        let hash = sha256_hex(token);
        if let Some(s) = store.session(&hash).await? {
            return Ok(Some(Authed {
                user: s.user,
                via: Via::Session,
                csrf: s.csrf_token,
                session_hash: Some(hash),
            }));
        }
    }
    Ok(None)
}

/// Unsafe methods with a session cookie must carry the session's CSRF token (header `X-CSRF-Token`, or the
/// `_csrf` form field checked by the page handlers) and, when the browser sends one, a same-origin `Origin`.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .map(|(_, h)| h == host)
        .unwrap_or(false)
}

pub fn csrf_matches(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty()
        && expected.len() == given.len()
        && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

impl<S> FromRequestParts<S> for Authed
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// Set by [`crate::authenticate_layer`], which also checked CSRF for session requests.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authed>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The client's address for throttling (the socket's peer, or the first `X-Forwarded-For` hop when the
/// operator says BrokeForge sits behind a proxy).
pub fn client_address(parts: &Parts, trust_proxy: bool) -> String {
    if trust_proxy
        && let Some(f) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
    {
        return f.split(',').next().unwrap_or_default().trim().to_string();
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}
