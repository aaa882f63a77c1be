//! First run (the administrator) and signing in and out.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::common::*;
use crate::auth::{self, Authed};
use crate::error::ApiError;
use crate::state::AppState;

// ---- first run, sign in ----

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub nav: Nav,
    pub setup: bool,
    pub email: String,
}

#[derive(Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
    /// The second factor, for accounts with two-factor sign-in.
    #[serde(default)]
    pub code: String,
    /// The pre-session token the form was rendered with.
    #[serde(default, rename = "_csrf")]
    pub csrf: String,
}

/// The sign-in or setup page, with a fresh pre-session token (cookie and hidden field): a forged post from
/// another site cannot know it, so nobody can be signed in to an account of the attacker's choosing.
fn login_page(
    state: &AppState,
    setup: bool,
    email: String,
    error: Option<&ApiError>,
    status: StatusCode,
) -> Response {
    let token = brokeforge_domain::accounts::random_token("");
    let mut nav = Nav {
        title: if setup { "Welcome" } else { "Sign in" }.into(),
        csrf: token.clone(),
        ..Nav::default()
    };
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    let mut page = render(&LoginPage { nav, setup, email }, status);
    if let Ok(v) = auth::presession_cookie(&token, state.config.secure_cookies).parse() {
        page.headers_mut().append(header::SET_COOKIE, v);
    }
    page
}

/// The form's token must be the one this browser was given with the form.
fn check_presession(parts: &Parts, given: &str) -> Result<(), PageError> {
    let expected = auth::cookie(parts, auth::PRESESSION_COOKIE).unwrap_or_default();
    if auth::csrf_matches(expected, given) {
        Ok(())
    } else {
        Err(
            ApiError::forbidden("the form expired or did not come from this page: reload it")
                .into(),
        )
    }
}

pub async fn setup_form(State(state): State<AppState>) -> PageResult {
    if state.store.count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    Ok(login_page(
        &state,
        true,
        String::new(),
        None,
        StatusCode::OK,
    ))
}

pub fn signed_in_redirect(state: &AppState, token: &str, to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, to.to_string()),
            (
                header::SET_COOKIE,
                auth::session_cookie(token, state.config.secure_cookies),
            ),
        ],
    )
        .into_response()
}

/// The first visit on an empty database creates the administrator.
pub async fn setup(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<Credentials>,
) -> PageResult {
    check_presession(&parts, &f.csrf)?;
    if state.store.count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    let made = state
        .domain
        .create_first_admin(&f.email, &f.password)
        .await
        .map_err(ApiError::from);
    match made {
        Ok(user) => {
            let token = state.domain.start_session(user.id).await?.token;
            Ok(signed_in_redirect(&state, &token, "/"))
        }
        Err(e) => Ok(login_page(
            &state,
            true,
            f.email,
            Some(&e),
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
    }
}

pub async fn login_form(State(state): State<AppState>, parts: Parts) -> PageResult {
    if state.store.count_users().await? == 0 {
        return Ok(see_other("/setup"));
    }
    if parts.extensions.get::<Authed>().is_some() {
        return Ok(see_other("/"));
    }
    Ok(login_page(
        &state,
        false,
        String::new(),
        None,
        StatusCode::OK,
    ))
}

pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<Credentials>,
) -> PageResult {
    check_presession(&parts, &f.csrf)?;
    let origin = crate::audit::origin(&parts, state.config.trust_proxy);
    match state
        .domain
        .login(&f.email, &f.password, Some(&f.code), &origin)
        .await
        .map_err(ApiError::from)
    {
        Ok(user) => {
            let token = state
                .domain
                .start_session_from(user.id, &origin)
                .await?
                .token;
            Ok(signed_in_redirect(&state, &token, "/"))
        }
        Err(e) => Ok(login_page(&state, false, f.email, Some(&e), e.status)),
    }
}

pub async fn logout(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    if let Some(h) = &u.session_hash {
        state.domain.end_session(h).await?;
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (
                header::SET_COOKIE,
                auth::clear_cookie(state.config.secure_cookies),
            ),
        ],
    )
        .into_response())
}
