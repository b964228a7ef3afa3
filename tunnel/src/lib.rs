//! Encapsulation between hosts.
