//! Network namespaces: resolving attach targets, entering them on a short-lived thread.
