//! Safe port types over the syscall wrappers: AF_PACKET veth ports, the TAP host port, UDP.
