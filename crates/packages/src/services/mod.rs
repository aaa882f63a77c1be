//! Service implementations, grouped by category as in the spec (`Services/{Category}/{Service}`).

pub mod database;
pub mod demo;
pub mod server;
pub mod sites;
pub mod webserver;
