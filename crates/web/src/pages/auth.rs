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
}

pub async fn setup_form(State(state): State<AppState>) -> PageResult {
    if state.store.count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    Ok(render(
        &LoginPage {
            nav: Nav {
                title: "Welcome".into(),
                ..Nav::default()
            },
            setup: true,
            email: String::new(),
        },
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
pub async fn setup(State(state): State<AppState>, Form(f): Form<Credentials>) -> PageResult {
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
        Err(e) => Ok(render(
            &LoginPage {
                nav: Nav {
                    title: "Welcome".into(),
                    ..Nav::default()
                }
                .with_error(&e),
                setup: true,
                email: f.email,
            },
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
    Ok(render(
        &LoginPage {
            nav: Nav {
                title: "Sign in".into(),
                ..Nav::default()
            },
            setup: false,
            email: String::new(),
        },
        StatusCode::OK,
    ))
}

pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<Credentials>,
) -> PageResult {
    let address = auth::client_address(&parts, state.config.trust_proxy);
    match state
        .domain
        .login(&f.email, &f.password, &address)
        .await
        .map_err(ApiError::from)
    {
        Ok(user) => {
            let token = state.domain.start_session(user.id).await?.token;
            Ok(signed_in_redirect(&state, &token, "/"))
        }
        Err(e) => Ok(render(
            &LoginPage {
                nav: Nav {
                    title: "Sign in".into(),
                    ..Nav::default()
                }
                .with_error(&e),
                setup: false,
                email: f.email,
            },
            e.status,
        )),
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
