//! The caller's account: sessions for API clients, API tokens, users (administrators), passwords.

use super::common::{Created, Typed};
use super::types::{
    CreatedToken, Done, LoginRequest, LoginResponse, SessionEntry, SessionList, TokenList,
    TwoFactorBody, TwoFactorSetup, TwoFactorState, UserList, UserResponse,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use brokeforge_domain::accounts::NewUser;

use super::common::{ApiResponse, Body};
use super::types::{PasswordBody, TokenBody};
use crate::auth::{self, Authed};
use crate::state::AppState;

pub async fn me(authed: Authed) -> Typed<UserResponse> {
    Ok(Json(UserResponse { user: authed.user }))
}

/// Sign in for an API session (browsers use the login page); answers with the cookie and the CSRF token.
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Body(b): Body<LoginRequest>,
) -> ApiResponse {
    let origin = crate::audit::origin(&parts, state.config.trust_proxy);
    let user = state
        .domain
        .login(&b.email, &b.password, b.code.as_deref(), &origin)
        .await?;
    let session = state.domain.start_session_from(user.id, &origin).await?;
    Ok((
        [(
            SET_COOKIE,
            auth::session_cookie(&session.token, state.config.secure_cookies),
        )],
        Json(LoginResponse {
            user,
            csrf_token: session.csrf,
        }),
    )
        .into_response())
}

pub async fn logout(State(state): State<AppState>, authed: Authed) -> ApiResponse {
    if let Some(h) = &authed.session_hash {
        state.domain.end_session(h).await?;
    }
    Ok((
        [(SET_COOKIE, auth::clear_cookie(state.config.secure_cookies))],
        Json(Done::ok()),
    )
        .into_response())
}

pub async fn list_tokens(State(state): State<AppState>, authed: Authed) -> Typed<TokenList> {
    Ok(Json(TokenList {
        tokens: state.domain.tokens(authed.user.id).await?,
    }))
}

pub async fn create_token(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<TokenBody>,
) -> Result<Created<CreatedToken>, crate::error::ApiError> {
    let t = state
        .domain
        .new_scoped_token(authed.user.id, &b.name, b.scope, b.expires_in_days)
        .await?;
    Ok(Created(CreatedToken {
        token: t.token,
        record: t.record,
    }))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> Typed<Done> {
    state.domain.revoke_token(authed.user.id, id).await?;
    Ok(Json(Done::ok()))
}

pub async fn list_users(State(state): State<AppState>, authed: Authed) -> Typed<UserList> {
    Ok(Json(UserList {
        users: state.domain.users(&authed.user).await?,
    }))
}

pub async fn create_user(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<NewUser>,
) -> Result<Created<UserResponse>, crate::error::ApiError> {
    let user = state.domain.add_user(&authed.user, &b).await?;
    Ok(Created(UserResponse { user }))
}

pub async fn delete_user(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> Typed<Done> {
    state.domain.delete_user(&authed.user, id).await?;
    Ok(Json(Done::ok()))
}

pub async fn set_password(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<PasswordBody>,
) -> Typed<Done> {
    state
        .domain
        .set_password(&authed.user, id, b.current_password.as_deref(), &b.password)
        .await?;
    Ok(Json(Done::ok()))
}

/// Start setting up two-factor sign-in: the secret and its `otpauth://` URI for the app.
pub async fn two_factor_setup(
    State(state): State<AppState>,
    authed: Authed,
) -> Typed<TwoFactorSetup> {
    let setup = state.domain.begin_two_factor(&authed.user).await?;
    Ok(Json(TwoFactorSetup {
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
    }))
}

/// Confirm with the app's first code: two-factor sign-in is on; the recovery codes are in this answer only.
pub async fn two_factor_confirm(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<TwoFactorBody>,
) -> Typed<TwoFactorState> {
    let codes = state
        .domain
        .confirm_two_factor(&authed.user, &b.code)
        .await?;
    Ok(Json(TwoFactorState {
        two_factor: true,
        recovery_codes: codes,
    }))
}

/// Turn it off (the password and a current or recovery code).
pub async fn two_factor_disable(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<TwoFactorBody>,
) -> Typed<TwoFactorState> {
    state
        .domain
        .disable_two_factor(&authed.user, &b.password, &b.code)
        .await?;
    Ok(Json(TwoFactorState {
        two_factor: false,
        recovery_codes: Vec::new(),
    }))
}

/// Your live browser sessions, newest first; `current` marks the one asking.
pub async fn list_sessions(State(state): State<AppState>, authed: Authed) -> Typed<SessionList> {
    let current = authed.session_hash.as_deref().map(|h| {
        h.chars()
            .take(brokeforge_store::accounts::SESSION_ID_LEN)
            .collect::<String>()
    });
    let sessions = state
        .domain
        .sessions(&authed.user)
        .await?
        .into_iter()
        .map(|s| {
            let current = current.as_deref() == Some(s.id.as_str());
            SessionEntry {
                session: s,
                current,
            }
        })
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// End one of your sessions (that browser is signed out).
pub async fn end_session(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Typed<Done> {
    state.domain.end_session_of(&authed.user, &id).await?;
    Ok(Json(Done::ok()))
}
