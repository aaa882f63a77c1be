//! Server-rendered pages (askama templates, no build step), by area. Forms post back here; a bad input
//! renders the page again with the error and what was typed.

mod account;
mod auth;
mod backups;
pub mod common;
mod dashboard;
mod firewall;
mod jobs;
mod logs;
mod servers;
mod sites;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/setup", get(auth::setup_form).post(auth::setup))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/servers/new", get(servers::new_server_form))
        .route("/servers", post(servers::create_server))
        .route("/servers/{id}", get(servers::server_page))
        .route("/servers/{id}/script", post(servers::server_script))
        .route("/servers/{id}/host-key", post(servers::pin_host_key))
        .route("/servers/{id}/delete", post(servers::delete_server))
        .route("/servers/{id}/install", post(servers::install))
        .route(
            "/servers/{id}/services/{name}/remove",
            post(servers::remove_service),
        )
        .route("/servers/{id}/sites", post(servers::create_site))
        .route(
            "/servers/{id}/backups",
            get(backups::backups_page).post(backups::create_plan),
        )
        .route(
            "/servers/{id}/firewall",
            get(firewall::firewall_page).post(firewall::add_rule),
        )
        .route(
            "/servers/{id}/firewall/{rule}/remove",
            post(firewall::remove_rule),
        )
        .route("/servers/{id}/logs", get(logs::logs_page))
        .route("/servers/{id}/backup-storages", post(backups::add_storage))
        .route(
            "/servers/{id}/backup-storages/{name}/check",
            post(backups::check_storage),
        )
        .route("/servers/{id}/backups/{plan}/run", post(backups::run_plan))
        .route(
            "/servers/{id}/backups/{plan}/verify",
            post(backups::verify_plan),
        )
        .route(
            "/servers/{id}/backups/{plan}/restore",
            post(backups::restore),
        )
        .route(
            "/servers/{id}/backups/{plan}/delete",
            post(backups::delete_plan),
        )
        .route(
            "/servers/{id}/backups/{plan}/snapshots/{snapshot}/download",
            get(crate::api::backups_download),
        )
        .route(
            "/servers/{id}/backups/{plan}/recovery-kit",
            // A file, like the snapshot download: the API's handler (it also forbids caching).
            get(crate::api::backups_recovery_kit),
        )
        .route(
            "/servers/{id}/databases/schemas",
            post(servers::create_schema),
        )
        .route(
            "/servers/{id}/databases/users",
            post(servers::create_db_user),
        )
        .route(
            "/servers/{id}/databases/{kind}/{engine}/{name}/drop",
            post(servers::drop_db_item),
        )
        .route("/sites/{id}", get(sites::site_page))
        .route("/sites/{id}/delete", post(sites::remove_site))
        .route("/sites/{id}/repository", post(sites::connect_repository))
        .route("/sites/{id}/deploy", post(sites::deploy))
        .route("/sites/{id}/tasks", post(sites::save_tasks))
        .route("/sites/{id}/certificate", post(sites::request_certificate))
        .route(
            "/sites/{id}/certificate/delete",
            post(sites::remove_certificate),
        )
        .route("/sites/{id}/rollback", post(sites::rollback))
        .route("/sites/{id}/deploy-script", post(sites::save_script))
        .route("/sites/{id}/settings", post(sites::save_settings))
        .route("/sites/{id}/env", post(sites::save_env))
        .route("/sites/{id}/webhook", post(sites::save_webhook))
        .route("/sites/{id}/commands", post(sites::run_command))
        .route("/deployments/{id}", get(jobs::deployment_page))
        .route("/jobs/{id}", get(jobs::job_page))
        .route("/account", get(account::account))
        .route("/audit", get(account::audit))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/account/password", post(account::change_password))
        .route("/account/sessions/{id}/end", post(account::end_session))
        .route("/account/2fa/setup", post(account::two_factor_setup))
        .route("/account/2fa/confirm", post(account::two_factor_confirm))
        .route("/account/2fa/disable", post(account::two_factor_disable))
        .route("/users", get(account::users).post(account::create_user))
        .route("/users/{id}/delete", post(account::delete_user))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
        .into_response()
}
