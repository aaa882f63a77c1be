//! The account page (API tokens, password) and user management (administrators).

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;
use brokeforge_domain::DomainError;
use brokeforge_domain::accounts::NewUser;

// ---- account and users ----

pub struct SessionRow {
    pub id: String,
    pub started: String,
    pub from: String,
    pub current: bool,
}

pub struct SshKeyRow {
    pub id: i64,
    pub name: String,
    pub fingerprint: String,
    /// Where it is: "server 3 as brokeforge (active)", ...
    pub on: String,
}

pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub state: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub nav: Nav,
    pub tokens: Vec<TokenRow>,
    pub new_token: String,
    pub two_factor: bool,
    pub codes_left: i64,
    pub sessions: Vec<SessionRow>,
    pub ssh_keys: Vec<SshKeyRow>,
    /// Two-factor sign-in being set up: the QR code (SVG BrokeForge drew) and the secret to type.
    pub setup_svg: String,
    pub setup_secret: String,
    /// Shown once, right after two-factor sign-in was turned on.
    pub recovery_codes: Vec<String>,
}

/// What one answer of the account page shows besides the lists.
#[derive(Default)]
pub struct Shown {
    pub new_token: String,
    pub setup: Option<brokeforge_domain::twofactor::TotpSetup>,
    pub recovery_codes: Vec<String>,
}

pub async fn account_view(
    state: &AppState,
    u: &Authed,
    new_token: String,
    error: Option<&ApiError>,
    notice: &str,
) -> PageResult {
    account_view_with(
        state,
        u,
        Shown {
            new_token,
            ..Shown::default()
        },
        error,
        notice,
    )
    .await
}

pub async fn account_view_with(
    state: &AppState,
    u: &Authed,
    shown: Shown,
    error: Option<&ApiError>,
    notice: &str,
) -> PageResult {
    // The user as stored now (two-factor may have changed in this request).
    let user = state.store.user(u.user.id).await?;
    let tokens = state
        .store
        .api_tokens(u.user.id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            live: t.revoked_at.is_none()
                && t.expires_at
                    .is_none_or(|e| e > brokeforge_core::time::now_ms()),
            state: {
                let used = match (t.revoked_at, t.last_used_at) {
                    (Some(r), _) => format!("revoked {}", ago(r)),
                    (None, Some(l)) => format!("used {}", ago(l)),
                    (None, None) => "never used".into(),
                };
                let expiry = match t.expires_at {
                    Some(e) if e <= brokeforge_core::time::now_ms() => ", expired".to_string(),
                    Some(e) => format!(", expires {}", brokeforge_core::time::utc_stamp(e)),
                    None => String::new(),
                };
                format!("{}; {used}{expiry}", t.scope.as_str())
            },
            name: t.name,
            prefix: t.prefix,
        })
        .collect();
    let mut nav = Nav::of(u, "Account");
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    nav.notice = notice.into();
    let current = u.session_hash.as_deref().map(|h| {
        h.chars()
            .take(brokeforge_store::accounts::SESSION_ID_LEN)
            .collect::<String>()
    });
    let sessions = state
        .domain
        .sessions(&user)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            current: current.as_deref() == Some(s.id.as_str()),
            started: ago(s.created_at),
            from: format!(
                "{} {}",
                s.ip,
                s.user_agent.chars().take(60).collect::<String>()
            )
            .trim()
            .to_string(),
            id: s.id,
        })
        .collect();
    let (setup_svg, setup_secret) = shown
        .setup
        .map(|s| (s.qr_svg, s.secret))
        .unwrap_or_default();
    let ssh_keys = state
        .domain
        .ssh_keys(&user)
        .await?
        .into_iter()
        .map(|(k, on)| SshKeyRow {
            id: k.id,
            name: k.name,
            fingerprint: k.fingerprint,
            on: if on.is_empty() {
                "on no server".into()
            } else {
                on.iter()
                    .map(|d| format!("server {} as {} ({})", d.server_id, d.unix_user, d.status))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
        .collect();
    Ok(render(
        &AccountPage {
            nav,
            ssh_keys,
            tokens,
            new_token: shown.new_token,
            two_factor: user.two_factor,
            sessions,
            codes_left: state.domain.recovery_codes_left(&user).await?,
            setup_svg,
            setup_secret,
            recovery_codes: shown.recovery_codes,
        },
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
    ))
}

pub async fn account(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    account_view(&state, &u, String::new(), None, "").await
}

#[derive(Deserialize)]
pub struct TokenForm {
    pub name: String,
    #[serde(default)]
    pub scope: brokeforge_store::TokenScope,
    /// Empty: until revoked.
    #[serde(default)]
    pub expires_in_days: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<TokenForm>,
) -> PageResult {
    let days = match f.expires_in_days.trim() {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let e = ApiError::invalid(
                    "expires_in_days",
                    "give a number of days, or leave it empty",
                );
                return account_view(&state, &u, String::new(), Some(&e), "").await;
            }
        },
    };
    match state
        .domain
        .new_scoped_token(u.user.id, &f.name, f.scope, days)
        .await
        .map_err(ApiError::from)
    {
        Ok(t) => account_view(&state, &u, t.token, None, "").await,
        Err(e) => account_view(&state, &u, String::new(), Some(&e), "").await,
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    state.domain.revoke_token(u.user.id, id).await?;
    Ok(see_other("/account"))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    pub current: String,
    pub password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<PasswordForm>,
) -> PageResult {
    if let Err(e) = state
        .domain
        .change_own_password(&u.user, &f.current, &f.password)
        .await
    {
        return account_view(&state, &u, String::new(), Some(&e.into()), "").await;
    }
    // Every session ended with the change; start a fresh one for this browser.
    let token = state.domain.start_session(u.user.id).await?.token;
    Ok(super::auth::signed_in_redirect(&state, &token, "/account"))
}

#[derive(Deserialize)]
pub struct SshKeyForm {
    pub name: String,
    pub public_key: String,
}

pub async fn add_ssh_key(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<SshKeyForm>,
) -> PageResult {
    match state
        .domain
        .add_ssh_key(&u.user, &f.name, &f.public_key)
        .await
    {
        Ok(k) => {
            account_view(
                &state,
                &u,
                String::new(),
                None,
                &format!("Added {}", k.name),
            )
            .await
        }
        Err(e) => account_view(&state, &u, String::new(), Some(&e.into()), "").await,
    }
}

pub async fn remove_ssh_key(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(key): Path<String>,
) -> PageResult {
    match state.domain.remove_ssh_key(&u.user, &key).await {
        Ok(jobs) => {
            let notice = if jobs.is_empty() {
                "Key deleted".to_string()
            } else {
                format!(
                    "Key deleted; it is being taken off {} server(s)",
                    jobs.len()
                )
            };
            account_view(&state, &u, String::new(), None, &notice).await
        }
        Err(e) => account_view(&state, &u, String::new(), Some(&e.into()), "").await,
    }
}

pub async fn end_session(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<String>,
) -> PageResult {
    state.domain.end_session_of(&u.user, &id).await?;
    Ok(see_other("/account"))
}

// ---- two-factor sign-in ----

pub async fn two_factor_setup(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    match state
        .domain
        .begin_two_factor(&u.user)
        .await
        .map_err(ApiError::from)
    {
        Ok(setup) => {
            let shown = Shown {
                setup: Some(setup),
                ..Shown::default()
            };
            account_view_with(&state, &u, shown, None, "").await
        }
        Err(e) => account_view(&state, &u, String::new(), Some(&e), "").await,
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    pub code: String,
    #[serde(default)]
    pub password: String,
}

pub async fn two_factor_confirm(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<CodeForm>,
) -> PageResult {
    match state
        .domain
        .confirm_two_factor(&u.user, &f.code)
        .await
        .map_err(ApiError::from)
    {
        Ok(codes) => {
            let shown = Shown {
                recovery_codes: codes,
                ..Shown::default()
            };
            account_view_with(&state, &u, shown, None, "Two-factor sign-in is on.").await
        }
        Err(e) => account_view(&state, &u, String::new(), Some(&e), "").await,
    }
}

pub async fn two_factor_disable(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<CodeForm>,
) -> PageResult {
    match state
        .domain
        .disable_two_factor(&u.user, &f.password, &f.code)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => {
            account_view(
                &state,
                &u,
                String::new(),
                None,
                "Two-factor sign-in is off.",
            )
            .await
        }
        Err(e) => account_view(&state, &u, String::new(), Some(&e), "").await,
    }
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub nav: Nav,
    pub users: Vec<brokeforge_store::User>,
    pub me: i64,
    pub email: String,
}

pub async fn users_view(
    state: &AppState,
    u: &Authed,
    email: String,
    error: Option<&ApiError>,
) -> PageResult {
    let users = state
        .domain
        .users(&u.user)
        .await
        .map_err(|e| PageError::with_user(e.into(), u))?;
    let mut nav = Nav::of(u, "Users");
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    Ok(render(
        &UsersPage {
            nav,
            users,
            me: u.user.id,
            email,
        },
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
    ))
}

pub async fn users(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    users_view(&state, &u, String::new(), None).await
}

#[derive(Deserialize)]
pub struct UserForm {
    pub email: String,
    pub password: String,
    pub admin: Option<String>,
}

pub async fn create_user(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<UserForm>,
) -> PageResult {
    let new = NewUser {
        email: f.email.clone(),
        password: f.password,
        admin: f.admin.is_some(),
    };
    match state.domain.add_user(&u.user, &new).await {
        Ok(_) => Ok(see_other("/users")),
        Err(DomainError::Forbidden(m)) => Err(PageError::with_user(ApiError::forbidden(m), &u)),
        Err(e) => users_view(&state, &u, f.email, Some(&e.into())).await,
    }
}

pub async fn delete_user(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    match state.domain.delete_user(&u.user, id).await {
        Ok(()) => {}
        Err(DomainError::Invalid(v)) => {
            return users_view(&state, &u, String::new(), Some(&v.into())).await;
        }
        Err(e) => return Err(PageError::with_user(e.into(), &u)),
    }
    Ok(see_other("/users"))
}

// ---- audit log ----

pub struct AuditRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub summary: String,
    pub status: i64,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub entries: Vec<AuditRow>,
    pub action: String,
    pub user: String,
    pub next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    pub action: String,
    pub user: String,
    pub before: Option<i64>,
}

/// What the caller may see of the audit log (administrators: everything), newest first, 100 a page.
pub async fn audit(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> PageResult {
    const PAGE: i64 = 100;
    let user_id = match q.user.trim() {
        "" => None,
        email => Some(match state.store.user_by_email(email).await? {
            Some(found) => found.id,
            // Nobody by that name: an empty list, not an error page.
            None => -1,
        }),
    };
    let entries = state
        .domain
        .audit_log(
            &u.user,
            brokeforge_store::AuditFilter {
                user_id,
                action: Some(q.action.trim().to_string()).filter(|a| !a.is_empty()),
                before: q.before,
                limit: PAGE,
                ..Default::default()
            },
        )
        .await?;
    let next = match entries.last() {
        Some(e) if entries.len() as i64 == PAGE => format!(
            "/audit?{}",
            serde_urlencoded::to_string([
                ("action", q.action.as_str()),
                ("user", q.user.as_str()),
                ("before", &e.id.to_string()),
            ])
            .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let entries = entries
        .into_iter()
        .map(|e| AuditRow {
            when: brokeforge_core::time::utc_stamp(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            summary: e.summary,
            status: e.status,
            ip: e.ip,
        })
        .collect();
    Ok(render(
        &AuditPage {
            nav: Nav::of(&u, "Audit log"),
            entries,
            action: q.action,
            user: q.user,
            next,
        },
        StatusCode::OK,
    ))
}
