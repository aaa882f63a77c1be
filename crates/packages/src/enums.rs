//! The spec's `Enums/`, shared with the store.

pub use brokeforge_core::{
    ConnectionStatus as Connection, EventStatus, ProvisionStatus, ProvisionType, ServiceStatus,
    ServiceType,
};
