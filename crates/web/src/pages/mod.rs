//! Server-rendered pages (askama templates, no build step), by area. Forms post back here; a bad input
//! renders the page again with the error and what was typed.

mod account;
mod auth;
mod backups;
pub mod common;
mod dashboard;
mod drift;
mod firewall;
mod jobs;
mod logs;
mod monitoring;
mod php;
mod recipes;
mod servers;
mod site_view;
mod site_work;
mod sites;
mod teams;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use brokeforge_domain::policy::Action;

use crate::state::AppState;

/// One page route with its policy action (`brokeforge_domain::policy`): the same table builds the router and
/// drives the authorization tests.
pub struct PageOp {
    pub method: &'static str,
    pub path: &'static str,
    pub action: Action,
    pub route: fn() -> MethodRouter<AppState>,
}

macro_rules! pages {
    ($($method:ident $path:literal $handler:path, $action:ident;)+) => {
        vec![$(PageOp {
            method: stringify!($method),
            path: $path,
            action: Action::$action,
            route: || axum::routing::$method($handler),
        }),+]
    };
}

pub fn operations() -> Vec<PageOp> {
    pages! {
        get "/" dashboard::dashboard, Account;
        get "/static/app.css" css, Account;
        get "/static/app.js" js, Account;
        get "/setup" auth::setup_form, Account;
        post "/setup" auth::setup, Account;
        get "/login" auth::login_form, Account;
        post "/login" auth::login, Account;
        post "/logout" auth::logout, Account;
        get "/servers/new" servers::new_server_form, Account;
        get "/recipes" recipes::recipes_page, Account;
        post "/recipes" recipes::save_recipe, Account;
        post "/recipes/run" recipes::run_recipe, Account;
        get "/recipe-runs/{id}" recipes::run_page, Account;
        post "/recipe-runs/{id}/resume" recipes::resume_run, Account;
        post "/servers" servers::create_server, Account;
        get "/servers/{id}" servers::server_page, Read;
        get "/servers/{id}/sites" servers::sites_page, Read;
        get "/servers/{id}/databases" servers::databases_page, Read;
        get "/servers/{id}/services" servers::services_page, Read;
        get "/servers/{id}/activity" servers::activity_page, Read;
        get "/servers/{id}/settings" servers::settings_page, Read;
        post "/servers/{id}/script" servers::server_script, ServerManage;
        post "/servers/{id}/host-key" servers::pin_host_key, ServerManage;
        post "/servers/{id}/delete" servers::delete_server, ServerRemove;
        post "/servers/{id}/team" servers::move_server, ServerRemove;
        post "/servers/{id}/install" servers::install, ServerManage;
        post "/servers/{id}/services/{name}/remove" servers::remove_service, ServerManage;
        post "/servers/{id}/sites" servers::create_site, ServerManage;
        get "/servers/{id}/backups" backups::backups_page, Read;
        post "/servers/{id}/backups" backups::create_plan, ServerManage;
        get "/servers/{id}/php" php::php_page, Read;
        post "/servers/{id}/php/{version}/settings" php::set_setting, ServerManage;
        post "/servers/{id}/php/{version}/extensions" php::change_extensions, ServerManage;
        get "/servers/{id}/firewall" firewall::firewall_page, Read;
        post "/servers/{id}/firewall" firewall::add_rule, ServerManage;
        post "/servers/{id}/firewall/{rule}/remove" firewall::remove_rule, ServerManage;
        get "/servers/{id}/drift" drift::drift_page, Read;
        post "/servers/{id}/drift/check" drift::check, ServerManage;
        post "/servers/{id}/drift/repair" drift::repair, ServerManage;
        post "/servers/{id}/drift/by-hand" drift::by_hand, ServerManage;
        get "/servers/{id}/logs" logs::logs_page, Read;
        get "/servers/{id}/monitoring" monitoring::monitoring_page, Read;
        post "/servers/{id}/monitoring/alerts" monitoring::add_alert, ServerManage;
        post "/servers/{id}/monitoring/alerts/{rule}/remove" monitoring::remove_alert, ServerManage;
        post "/servers/{id}/monitoring/channels" monitoring::add_channel, ServerManage;
        post "/servers/{id}/monitoring/channels/{name}/test" monitoring::test_channel, ServerManage;
        post "/servers/{id}/monitoring/channels/{name}/remove" monitoring::remove_channel, ServerManage;
        post "/servers/{id}/backup-storages" backups::add_storage, ServerManage;
        post "/servers/{id}/backup-storages/{name}/check" backups::check_storage, ServerManage;
        post "/servers/{id}/backups/{plan}/run" backups::run_plan, ServerManage;
        post "/servers/{id}/backups/{plan}/verify" backups::verify_plan, ServerManage;
        post "/servers/{id}/backups/{plan}/restore" backups::restore, ServerManage;
        post "/servers/{id}/backups/{plan}/delete" backups::delete_plan, ServerManage;
        get "/servers/{id}/backups/{plan}/snapshots/{snapshot}/download" crate::api::backups_download, ReadCredentials;
        get "/servers/{id}/backups/{plan}/recovery-kit" crate::api::backups_recovery_kit, ReadCredentials;
        post "/servers/{id}/databases/schemas" servers::create_schema, Databases;
        post "/servers/{id}/databases/users" servers::create_db_user, Databases;
        post "/servers/{id}/databases/{kind}/{engine}/{name}/drop" servers::drop_db_item, Databases;
        get "/sites/{id}" sites::site_page, Read;
        get "/sites/{id}/deployments" sites::deployments_page, Read;
        get "/sites/{id}/environment" sites::environment_page, Read;
        get "/sites/{id}/commands" sites::commands_page, Read;
        get "/sites/{id}/tasks" sites::tasks_page, Read;
        get "/sites/{id}/https" sites::https_page, Read;
        get "/sites/{id}/health" sites::health_page, Read;
        post "/sites/{id}/delete" sites::remove_site, ServerManage;
        post "/sites/{id}/repository" sites::connect_repository, SiteConfigure;
        post "/sites/{id}/deploy" sites::deploy, Deploy;
        post "/sites/{id}/tasks" site_work::save_tasks, SiteConfigure;
        post "/sites/{id}/certificate" sites::request_certificate, ServerManage;
        post "/sites/{id}/certificate/delete" sites::remove_certificate, ServerManage;
        post "/sites/{id}/check" sites::save_check, ServerManage;
        post "/sites/{id}/check/delete" sites::remove_check, ServerManage;
        post "/sites/{id}/rollback" sites::rollback, Deploy;
        post "/sites/{id}/deploy-script" sites::save_script, SiteConfigure;
        post "/sites/{id}/settings" sites::save_settings, SiteConfigure;
        post "/sites/{id}/php" sites::change_php, SiteConfigure;
        post "/sites/{id}/pool" sites::change_pool, SiteConfigure;
        post "/sites/{id}/env" site_work::save_env, SiteConfigure;
        post "/sites/{id}/webhook" site_work::save_webhook, SiteConfigure;
        post "/sites/{id}/commands" site_work::run_command, SiteCommand;
        get "/deployments/{id}" jobs::deployment_page, Read;
        get "/jobs/{id}" jobs::job_page, Read;
        get "/account" account::account, Account;
        get "/audit" account::audit, Account;
        post "/account/tokens" account::create_token, Account;
        post "/account/tokens/{id}/revoke" account::revoke_token, Account;
        post "/account/password" account::change_password, Account;
        post "/account/ssh-keys" account::add_ssh_key, Account;
        post "/account/ssh-keys/{key}/delete" account::remove_ssh_key, Account;
        post "/account/sessions/{id}/end" account::end_session, Account;
        post "/account/2fa/setup" account::two_factor_setup, Account;
        post "/account/2fa/confirm" account::two_factor_confirm, Account;
        post "/account/2fa/disable" account::two_factor_disable, Account;
        get "/teams" teams::teams_page, Account;
        post "/teams" teams::team_action, Account;
        get "/invitations/{token}" teams::invitation_page, Account;
        post "/invitations/{token}/accept" teams::accept_invitation, Account;
        get "/users" account::users, Account;
        post "/users" account::create_user, Account;
        post "/users/{id}/delete" account::delete_user, Account;
    }
}

pub fn routes() -> Router<AppState> {
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for op in operations() {
        let route = (op.route)().layer(axum::Extension(op.action));
        match by_path.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(route),
            None => by_path.push((op.path, route)),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, mr)| r.route(path, mr))
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
