//! ramjet-core: the language every ramjet crate speaks. No I/O.

