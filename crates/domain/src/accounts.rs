//! Accounts: Argon2id passwords, login throttling kept in the database (so it holds across nodes), browser
//! sessions, personal API tokens, and user management. Session and API tokens are random; only their SHA-256
//! is stored, so a copy of the database does not let anyone in.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use brokeforge_core::time::now_ms;
use brokeforge_store::TokenScope;
use brokeforge_store::{ApiToken, Session, User};
use serde::Deserialize;
use sha2::Digest;

use crate::{Domain, DomainError, DomainResult};

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

pub fn check_password_rules(password: &str) -> DomainResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(DomainError::invalid(
            "password",
            format!("use at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(DomainError::invalid("password", "at most 1024 bytes"));
    }
    Ok(())
}

/// Argon2id with the crate's default (OWASP) parameters, as a PHC string.
pub async fn hash_password(password: &str) -> DomainResult<String> {
    let _permit = hashing()
        .acquire()
        .await
        .map_err(|e| DomainError::Internal(format!("password hashing: {e}")))?;
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| DomainError::Internal(format!("password hashing: {e}")))?
    .map_err(|e| {
        tracing::error!(error = %e, "hashing a password failed");
        DomainError::Internal(format!("password hashing: {e}"))
    })
}

/// Argon2 verifications running at once: each holds ~19 MiB, so a burst of sign-ins cannot exhaust memory.
fn hashing() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.clamp(2, 4))
    })
}

/// A throttle key: what is counted, and a bounded part of the value (a huge email cannot bloat the table).
fn throttle_key(kind: &str, value: &str) -> String {
    let value: String = value.chars().take(200).collect();
    format!("{kind}:{value}")
}

pub async fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(_permit) = hashing().acquire().await else {
        return false;
    };
    let (pw, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A new account.
#[derive(Debug, Clone, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

/// A session just started: the cookie value (the token) and the CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

/// A personal API token just created: the token (shown once) and its record.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub record: ApiToken,
}

impl Domain {
    /// Sign in. The attempt is counted before the password is checked (so parallel guesses all count),
    /// refused when its email or its client address has failed too often lately, and only then checked, with
    /// at most a few Argon2 verifications at once (each holds ~19 MiB).
    /// Sign in with a password and, for an account with two-factor sign-in, a code (TOTP or recovery). A wrong
    /// or missing code counts as a failed attempt, so codes are throttled like passwords.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
        origin: &crate::audit::Origin,
    ) -> DomainResult<User> {
        let result = self.check_login(email, password, code, &origin.ip).await;
        let (user_id, status, summary) = match &result {
            Ok(u) => (Some(u.id), 200, "signed in".to_string()),
            Err(e) => (None, 401, e.to_string()),
        };
        self.audit(brokeforge_store::NewAuditEntry {
            user_id,
            actor: email.trim().to_ascii_lowercase(),
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            action: "sign in".into(),
            target: "/login".into(),
            status,
            summary,
            ..Default::default()
        })
        .await;
        result
    }

    async fn check_login(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
        address: &str,
    ) -> DomainResult<User> {
        let store = &self.store;
        let email = email.trim().to_ascii_lowercase();
        let since = now_ms() - THROTTLE_WINDOW_MS;
        let by_email = throttle_key("email", &email);
        let by_address = throttle_key("addr", address);
        let attempt = store.begin_login_attempt(&[&by_email, &by_address]).await?;
        for (key, max) in [
            (&by_email, MAX_FAILURES_PER_EMAIL),
            (&by_address, MAX_FAILURES_PER_ADDRESS),
        ] {
            // This attempt is among the failures counted: more than `max` means `max` failed before it.
            let (failures, oldest) = store.login_failures(key, since).await?;
            if failures > max {
                let wait_min = oldest
                    .map(|o| ((o + THROTTLE_WINDOW_MS - now_ms()) / 60_000).max(1))
                    .unwrap_or(15);
                return Err(DomainError::Throttled(format!(
                    "too many failed sign-ins; try again in {wait_min} minutes"
                )));
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
                if u.two_factor {
                    match code.map(str::trim).filter(|c| !c.is_empty()) {
                        None => {
                            return Err(DomainError::SecondFactorRequired(
                                "this account uses two-factor sign-in: give the code from your authenticator app (or a recovery code)".into(),
                            ));
                        }
                        Some(c) if !self.second_factor_ok(&u, c).await? => {
                            return Err(DomainError::Unauthorized(
                                "wrong or already used two-factor code".into(),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                store.login_succeeded(&by_email, &attempt).await?;
                Ok(u)
            }
            _ => Err(DomainError::Unauthorized("wrong email or password".into())),
        }
    }

    pub async fn start_session(&self, user_id: i64) -> DomainResult<NewSession> {
        self.start_session_from(user_id, &crate::audit::Origin::default())
            .await
    }

    /// A session started from `origin` (shown in the account's sessions list).
    pub async fn start_session_from(
        &self,
        user_id: i64,
        origin: &crate::audit::Origin,
    ) -> DomainResult<NewSession> {
        let token = random_token("");
        let csrf = random_token("");
        self.store
            .create_session(
                user_id,
                &sha256_hex(&token),
                &csrf,
                SESSION_TTL_MS,
                &origin.ip,
                &origin.user_agent,
            )
            .await?;
        Ok(NewSession { token, csrf })
    }

    pub async fn sessions(&self, user: &User) -> DomainResult<Vec<brokeforge_store::SessionInfo>> {
        Ok(self.store.sessions_of(user.id).await?)
    }

    /// End one of the user's own sessions (another user's is not found).
    pub async fn end_session_of(&self, user: &User, id: &str) -> DomainResult<()> {
        if self.store.delete_session_of(user.id, id).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound)
        }
    }

    /// The live session a cookie's token names, if any.
    pub async fn session(&self, token: &str) -> DomainResult<Option<Session>> {
        Ok(self.store.session(&sha256_hex(token)).await?)
    }

    pub async fn end_session(&self, token_hash: &str) -> DomainResult<()> {
        Ok(self.store.delete_session(token_hash).await?)
    }

    /// The user a bearer token belongs to, and what the token may do.
    pub async fn token_auth(&self, token: &str) -> DomainResult<(User, TokenScope)> {
        self.store
            .api_token_auth(&sha256_hex(token))
            .await?
            .ok_or_else(|| {
                DomainError::Unauthorized("this API token is unknown, expired or revoked".into())
            })
    }

    /// The user a bearer token belongs to.
    pub async fn token_user(&self, token: &str) -> DomainResult<User> {
        self.store
            .api_token_user(&sha256_hex(token))
            .await?
            .ok_or_else(|| DomainError::Unauthorized("this API token is unknown or revoked".into()))
    }

    /// A new personal API token; the token itself is only in this answer.
    pub async fn new_token(&self, user_id: i64, name: &str) -> DomainResult<NewToken> {
        self.new_scoped_token(user_id, name, TokenScope::Full, None)
            .await
    }

    /// A token limited to `scope`, expiring after `expires_in_days` (1 to 3650) when given.
    pub async fn new_scoped_token(
        &self,
        user_id: i64,
        name: &str,
        scope: TokenScope,
        expires_in_days: Option<i64>,
    ) -> DomainResult<NewToken> {
        let expires_at = match expires_in_days {
            None => None,
            Some(d) if (1..=3650).contains(&d) => Some(now_ms() + d * 24 * 3600 * 1000),
            Some(_) => {
                return Err(DomainError::invalid(
                    "expires_in_days",
                    "a token lives 1 to 3650 days (or leave it empty: until revoked)",
                ));
            }
        };
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(DomainError::invalid(
                "name",
                "name the token (1 to 100 characters)",
            ));
        }
        let token = random_token("bf_");
        let record = self
            .store
            .create_scoped_api_token(
                user_id,
                name,
                &sha256_hex(&token),
                &token[..10],
                scope,
                expires_at,
            )
            .await?;
        Ok(NewToken { token, record })
    }

    pub async fn tokens(&self, user_id: i64) -> DomainResult<Vec<ApiToken>> {
        Ok(self.store.api_tokens(user_id).await?)
    }

    pub async fn revoke_token(&self, user_id: i64, token_id: i64) -> DomainResult<()> {
        Ok(self.store.revoke_api_token(user_id, token_id).await?)
    }

    /// Validate and create an account.
    pub async fn create_user(&self, u: &NewUser) -> DomainResult<User> {
        let email = brokeforge_core::validate::email(&u.email)?;
        check_password_rules(&u.password)?;
        let hash = hash_password(&u.password).await?;
        Ok(self.store.create_user(&email, &hash, u.admin).await?)
    }

    /// Create the first administrator; refused once anyone has an account.
    pub async fn create_first_admin(&self, email: &str, password: &str) -> DomainResult<User> {
        if self.store.count_users().await? > 0 {
            return Err(DomainError::conflict(
                "already_set_up",
                "BrokeForge is set up already: sign in",
            ));
        }
        self.create_user(&NewUser {
            email: email.into(),
            password: password.into(),
            admin: true,
        })
        .await
    }

    pub async fn users(&self, actor: &User) -> DomainResult<Vec<User>> {
        require_admin(actor)?;
        Ok(self.store.users().await?)
    }

    pub async fn add_user(&self, actor: &User, u: &NewUser) -> DomainResult<User> {
        require_admin(actor)?;
        self.create_user(u).await
    }

    /// Delete a user and everything they own (administrators; not oneself).
    pub async fn delete_user(&self, actor: &User, id: i64) -> DomainResult<()> {
        require_admin(actor)?;
        if id == actor.id {
            return Err(DomainError::invalid(
                "user",
                "you cannot delete your own account",
            ));
        }
        self.store.user(id).await?;
        Ok(self.store.delete_user(id).await?)
    }

    /// Set a password: one's own (proving the current one), or anyone else's as an administrator. The
    /// user's sessions and API tokens end.
    pub async fn set_password(
        &self,
        actor: &User,
        id: i64,
        current: Option<&str>,
        password: &str,
    ) -> DomainResult<()> {
        if id == actor.id {
            let ok = match current {
                Some(c) => verify_password(c, &actor.password_hash).await,
                None => false,
            };
            if !ok {
                return Err(DomainError::invalid(
                    "current_password",
                    "give your current password to change it",
                ));
            }
        } else {
            require_admin(actor)?;
        }
        check_password_rules(password)?;
        let hash = hash_password(password).await?;
        Ok(self.store.set_password_hash(id, &hash).await?)
    }

    /// The operator's reset (the `brokeforge admin` command, run on BrokeForge's own machine): no actor.
    pub async fn reset_password(&self, email: &str, password: &str) -> DomainResult<User> {
        let user = self
            .store
            .user_by_email(email)
            .await?
            .ok_or_else(|| DomainError::invalid("email", format!("no user {email}")))?;
        check_password_rules(password)?;
        let hash = hash_password(password).await?;
        self.store.set_password_hash(user.id, &hash).await?;
        Ok(user)
    }

    /// Change one's own password, proving the current one.
    pub async fn change_own_password(
        &self,
        actor: &User,
        current: &str,
        new: &str,
    ) -> DomainResult<()> {
        if !verify_password(current, &actor.password_hash).await {
            return Err(DomainError::invalid(
                "current",
                "the current password is wrong",
            ));
        }
        check_password_rules(new)?;
        let hash = hash_password(new).await?;
        Ok(self.store.set_password_hash(actor.id, &hash).await?)
    }
}

pub fn require_admin(user: &User) -> DomainResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only an administrator may do this".into(),
        ))
    }
}
