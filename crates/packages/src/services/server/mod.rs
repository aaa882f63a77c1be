//! The spec's `Services/Server` category: getting into a server (access, connection checks), its base
//! provisioning, and two harmless packages (the demo, the benchmark's synthetic plan).

crate::packages![
    provision,
    access,
    connection_check,
    demo,
    synthetic,
    firewall,
    user_keys,
    recipe,
    drift
];

pub mod logs;
