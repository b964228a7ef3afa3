//! No module reaches up: each module of `src/` may use only the modules below it. A `use
//! crate::x` (or a `crate::x::` path) that breaks the order fails this test, naming the
//! file and what it reached for.
//!
//! From the bottom: `sys` (syscall wrappers); the safe OS layers and small leaves
//! (`netlink`, `netns`, `io`, `secrets`, `ratelog`, `logfile`, `pidfile`, `home`); the API
//! contract (`api`); durable state; the data plane; the mesh thread; the router; the
//! Docker plugin; the daemon; the labs; the CNI plugin and the command line on top.

// A test: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each module and the modules it may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("sys", &[]),
    ("netlink", &["sys"]),
    ("netns", &["sys"]),
    ("io", &["sys", "netlink"]),
    ("secrets", &[]),
    ("ratelog", &[]),
    ("logfile", &[]),
    ("pidfile", &[]),
    ("home", &["secrets", "logfile"]),
    ("api", &["secrets"]),
    ("state", &["api", "secrets"]),
    ("dataplane", &["sys", "io", "netlink", "api"]),
    ("meshd", &["api", "dataplane", "ratelog"]),
    (
        "router",
        &[
            "api",
            "dataplane",
            "meshd",
            "home",
            "io",
            "netlink",
            "netns",
            "state",
        ],
    ),
    // The Docker plugin: a client of the API, in a process the daemon supervises.
    (
        "docker",
        &["api", "home", "logfile", "pidfile", "state", "sys"],
    ),
    (
        "daemon",
        &[
            "api", "docker", "home", "logfile", "pidfile", "router", "secrets", "sys",
        ],
    ),
    ("testlab", &["netlink", "netns", "pidfile"]),
    ("lab", &["netns", "sys", "testlab"]),
    ("cni", &["api", "netlink", "netns", "state"]),
    (
        "cli",
        &[
            "api", "cni", "daemon", "docker", "home", "lab", "netlink", "pidfile", "router",
            "state", "sys",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.trim_end_matches(".rs").to_string())
}

/// The modules a file names as `crate::x`, outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn no_module_reaches_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(m, _)| *m == module) else {
            broken.push(format!(
                "{}: module {module} has no place in the layers (add it to tests/layers.rs)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&text) {
            if used != module && !allowed.contains(&used.as_str()) {
                broken.push(format!("{}: {module} uses crate::{used}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "modules reaching up:\n{}",
        broken.join("\n")
    );
}
