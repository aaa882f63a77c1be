//! The spec's `Services/WebServer` category: nginx + PHP-FPM.

crate::packages![nginx, php];
