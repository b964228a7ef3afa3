//! The `CNI_*` environment: which operation, on which container and interface.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::error::{CniError, ErrorCode};

/// The operation a runtime asks for (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach the container to the network (or return the existing attachment).
    Add,
    /// Detach; succeeds when there is nothing to detach.
    Del,
    /// Verify the attachment is as ADD left it.
    Check,
    /// Whether the plugin can serve ADD now (1.1).
    Status,
    /// Remove attachments the runtime no longer knows (1.1).
    Gc,
    /// Which spec versions the plugin speaks.
    Version,
}

impl Command {
    /// The name as `CNI_COMMAND` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    /// The variables the spec requires for this operation (besides `CNI_COMMAND`).
    fn required(self) -> &'static [&'static str] {
        match self {
            Self::Add | Self::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Self::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Self::Status | Self::Gc | Self::Version => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invocation's parameters, checked against the spec's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (required for ADD, DEL, CHECK).
    pub container_id: Option<String>,
    /// `CNI_NETNS`: the container's namespace file (required for ADD and CHECK).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`: the interface inside the container.
    pub ifname: Option<String>,
    /// `CNI_ARGS`, as key/value pairs in order.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: where delegated plugins are looked up.
    pub path: Vec<PathBuf>,
}

fn env_error(var: &str, what: impl fmt::Display) -> CniError {
    CniError::new(
        ErrorCode::InvalidEnvironment,
        format!("invalid environment variable {var}"),
        format!("{var} {what}"),
    )
}

impl Invocation {
    /// Reads the `CNI_*` variables out of an environment (other variables are ignored).
    pub fn from_env<I, K, V>(vars: I) -> Result<Self, CniError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with("CNI_"))
            .collect();
        let command = match vars.get("CNI_COMMAND").map(String::as_str) {
            None | Some("") => {
                return Err(env_error(
                    "CNI_COMMAND",
                    "is not set: it must be one of ADD, DEL, CHECK, STATUS, GC, VERSION",
                ));
            }
            Some(c) => Command::parse(c).ok_or_else(|| {
                env_error(
                    "CNI_COMMAND",
                    format!("is {c:?}: it must be one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
                )
            })?,
        };
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        for var in command.required() {
            if get(var).is_none() {
                return Err(env_error(
                    var,
                    format!("is not set (the spec requires it for {command})"),
                ));
            }
        }
        let container_id = get("CNI_CONTAINERID");
        if let Some(id) = &container_id {
            validate_container_id(id).map_err(|why| env_error("CNI_CONTAINERID", why))?;
        }
        let ifname = get("CNI_IFNAME");
        if let Some(name) = &ifname {
            validate_ifname(name).map_err(|why| env_error("CNI_IFNAME", why))?;
        }
        let netns = get("CNI_NETNS").map(PathBuf::from);
        let args = match get("CNI_ARGS") {
            Some(a) => parse_cni_args(&a).map_err(|why| env_error("CNI_ARGS", why))?,
            None => Vec::new(),
        };
        let path = get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// The value of one `CNI_ARGS` key (the last one wins, as libcni's parser does).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `CNI_ARGS` ("K=V;K2=V2"); an item without '=' or with an empty key is an error.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(';')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("has {item:?}, which is not KEY=VALUE")),
        })
        .collect()
}

/// The spec's rule: not empty, starts alphanumeric, then alphanumerics, '_', '.', '-'.
fn validate_container_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return Err(format!("is {id:?}: it must start with a letter or digit")),
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "is {id:?}: {bad:?} is not allowed (letters, digits, '_', '.', '-')"
        ));
    }
    Ok(())
}

/// The spec's (and Linux's) interface name rules.
fn validate_ifname(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("is {name:?}, which is not an interface name"));
    }
    if name.len() >= 16 {
        return Err(format!("is {name:?}: interface names are at most 15 bytes"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "is {name:?}: '/', ':' and whitespace are not allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Invocation, CniError> {
        Invocation::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn an_add_is_read_whole() {
        let inv = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1.x_y"),
            ("CNI_NETNS", "/run/netns/c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5"),
            ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.container_id.as_deref(), Some("abc-1.x_y"));
        assert_eq!(inv.netns, Some(PathBuf::from("/run/netns/c1")));
        assert_eq!(inv.arg("IP"), Some("10.0.0.5"));
        assert_eq!(inv.arg("K8S_POD_NAME"), Some("web"));
        assert_eq!(
            inv.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn missing_and_unknown_variables_are_named() {
        let e = env(&[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert!(e.details.contains("CNI_COMMAND"), "{e}");
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert!(e.details.contains("\"FROB\""), "{e}");
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert!(e.details.starts_with("CNI_NETNS"), "{e}");
        // DEL does not need a namespace; VERSION and STATUS need nothing.
        assert!(
            env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", "eth0")
            ])
            .is_ok()
        );
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
    }

    #[test]
    fn ids_ifnames_and_args_follow_the_spec() {
        let base = |id: &str, ifname: &str, args: &str| {
            env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", ifname),
                ("CNI_ARGS", args),
            ])
        };
        assert!(base("-x", "eth0", "").is_err());
        assert!(base("a b", "eth0", "").is_err());
        assert!(base("a", "..", "").is_err());
        assert!(base("a", "eth:0", "").is_err());
        assert!(base("a", "abcdefghijklmnop", "").is_err());
        assert!(base("a", "abcdefghijklmno", "").is_ok());
        let e = base("a", "eth0", "FOO").unwrap_err();
        assert!(e.details.starts_with("CNI_ARGS"), "{e}");
        assert_eq!(parse_cni_args("A=1;;B=").unwrap().len(), 2);
        assert!(parse_cni_args("=1").is_err());
    }
}
