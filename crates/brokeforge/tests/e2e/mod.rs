//! End to end on real Debian 12 hosts (debootstrap + systemd-nspawn, see `scripts/e2e-hosts.sh`): the harness,
//! then one file per story. Run when `BROKEFORGE_E2E=1` (`.ci/run` sets it); then a host that cannot start
//! fails the test.

pub mod harness;

mod backups;
mod cli;
mod databases;
mod drift;
mod monitoring;
mod onboarding;
mod package;
mod sites;
mod webserver;
