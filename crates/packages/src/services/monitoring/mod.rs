//! Monitoring: the metrics collector each server pushes its reports with.

crate::packages![agent];
