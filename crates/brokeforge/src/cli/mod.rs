//! The client commands: everything the web app does, from a terminal or a script, through the JSON API. One
//! module per subcommand.

pub mod account;
pub mod audit;
pub mod backup;
pub mod check;
pub mod common;
pub mod db;
pub mod firewall;
pub mod jobs;
pub mod login;
pub mod logs;
pub mod monitoring;
pub mod package;
pub mod php;
pub mod recipe;
pub mod server;
pub mod site;
mod site_view;
pub mod team;
