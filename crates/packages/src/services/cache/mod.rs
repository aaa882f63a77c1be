//! Caches besides Redis: Memcached.

crate::packages![memcached];
