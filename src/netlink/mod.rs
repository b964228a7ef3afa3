//! rtnetlink operations: veths, links, addresses, MTU, without shelling out to `ip`.
