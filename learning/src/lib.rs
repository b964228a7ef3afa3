//! The learning tables of the switch.
