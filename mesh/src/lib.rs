//! The peer mesh control plane.
