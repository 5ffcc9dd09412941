//! ramjet-net: everything that meets a socket.

