//! Language runtimes besides PHP: Node.js.

crate::packages![nodejs];
