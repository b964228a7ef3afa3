//! A client of the Docker Engine API, for the few things weft asks dockerd: is it there,
//! what is network X called, create or remove a network.
//!
//! It talks to "this host's" dockerd the way the docker CLI finds it: `DOCKER_HOST`
//! (`unix://PATH` only), else `/var/run/docker.sock`. Several dockerds on one machine
//! (one per host namespace in the tests) are told apart by that variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::client::{Client, ClientError};

/// Where dockerd listens when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Why a call to dockerd failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `DOCKER_HOST` names something weft cannot dial.
    #[error(
        "DOCKER_HOST={0:?} is not supported: weft talks to dockerd on a unix socket (unix:///path)"
    )]
    UnsupportedHost(String),
    /// Nothing answers on the socket.
    #[error("no Docker daemon answers on {}", .0.display())]
    NotRunning(PathBuf),
    /// dockerd answered with an error.
    #[error("Docker: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// The connection broke or the answer was not what the API documents.
    #[error("talking to dockerd on {}: {message}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A Docker network as `GET /networks/{id}` describes it (the fields weft reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DockerNetwork {
    /// Its name: the weft network's name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Its driver.
    #[serde(rename = "Driver")]
    pub driver: String,
    /// Its driver options (`-o`).
    #[serde(rename = "Options", default)]
    pub options: Option<BTreeMap<String, String>>,
    /// The containers on it, by container id.
    #[serde(rename = "Containers", default)]
    pub containers: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Serialize)]
struct CreateNetworkBody<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Driver")]
    driver: &'a str,
    #[serde(rename = "CheckDuplicate")]
    check_duplicate: bool,
    #[serde(rename = "IPAM")]
    ipam: IpamBody<'a>,
}

#[derive(Debug, Serialize)]
struct IpamBody<'a> {
    #[serde(rename = "Driver")]
    driver: &'a str,
}

#[derive(Debug, Deserialize)]
struct DockerErrorBody {
    message: String,
}

/// A client of one dockerd.
#[derive(Debug, Clone)]
pub struct Engine {
    client: Client,
    socket: PathBuf,
}

impl Engine {
    /// The dockerd `DOCKER_HOST` names (or the default socket).
    pub fn from_env() -> Result<Self, EngineError> {
        Self::for_host(std::env::var("DOCKER_HOST").ok().as_deref())
    }

    /// The dockerd a `DOCKER_HOST` value names (`None` or empty: the default socket).
    pub fn for_host(host: Option<&str>) -> Result<Self, EngineError> {
        let socket = match host.filter(|h| !h.is_empty()) {
            None => PathBuf::from(DEFAULT_DOCKER_SOCKET),
            Some(h) => match h.strip_prefix("unix://") {
                Some(p) if p.starts_with('/') => PathBuf::from(p),
                _ => return Err(EngineError::UnsupportedHost(h.to_string())),
            },
        };
        Ok(Self::at(&socket))
    }

    /// The dockerd on this socket.
    pub fn at(socket: &Path) -> Self {
        Self {
            client: Client::new(socket).with_timeout(Duration::from_secs(60)),
            socket: socket.to_path_buf(),
        }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether dockerd answers (`GET /_ping`), within a short time.
    pub fn ping(&self) -> bool {
        self.client
            .clone()
            .with_timeout(Duration::from_secs(5))
            .exchange("GET", "/_ping", None)
            .is_ok_and(|(status, _)| status == 200)
    }

    /// A network by id or name; `Ok(None)` when Docker has none such.
    pub fn network(&self, id_or_name: &str) -> Result<Option<DockerNetwork>, EngineError> {
        let path = format!("/networks/{}", path_segment(id_or_name)?);
        match self.call("GET", &path, None) {
            Ok(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| self.protocol(format!("bad network description: {e}"))),
            Err(EngineError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a network with this driver and IPAM driver.
    pub fn create_network(
        &self,
        name: &str,
        driver: &str,
        ipam_driver: &str,
    ) -> Result<(), EngineError> {
        let body = serde_json::to_vec(&CreateNetworkBody {
            name,
            driver,
            check_duplicate: true,
            ipam: IpamBody {
                driver: ipam_driver,
            },
        })
        .map_err(|e| self.protocol(e.to_string()))?;
        self.call("POST", "/networks/create", Some(&body)).map(drop)
    }

    /// Removes a network.
    pub fn remove_network(&self, id_or_name: &str) -> Result<(), EngineError> {
        let path = format!("/networks/{}", path_segment(id_or_name)?);
        self.call("DELETE", &path, None).map(drop)
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, EngineError> {
        let (status, payload) = self
            .client
            .exchange(method, path, body)
            .map_err(|e| match e {
                ClientError::NotRunning(p) => EngineError::NotRunning(p),
                other => self.protocol(other.to_string()),
            })?;
        if (200..300).contains(&status) {
            return Ok(payload);
        }
        let message = serde_json::from_slice::<DockerErrorBody>(&payload)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&payload).into_owned());
        Err(EngineError::Refused { status, message })
    }

    fn protocol(&self, message: String) -> EngineError {
        EngineError::Protocol {
            path: self.socket.clone(),
            message,
        }
    }
}

/// A network id or name as one URL path segment: Docker's names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// so anything else is refused rather than escaped.
fn path_segment(s: &str) -> Result<&str, EngineError> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(s)
    } else {
        Err(EngineError::Refused {
            status: 400,
            message: format!("{s:?} is not a Docker network id or name"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_is_honoured_and_checked() {
        assert_eq!(
            Engine::for_host(None).unwrap().socket(),
            Path::new(DEFAULT_DOCKER_SOCKET)
        );
        assert_eq!(
            Engine::for_host(Some("unix:///tmp/h1/docker.sock"))
                .unwrap()
                .socket(),
            Path::new("/tmp/h1/docker.sock")
        );
        for bad in ["tcp://1.2.3.4:2375", "unix://relative", "/tmp/x"] {
            assert!(matches!(
                Engine::for_host(Some(bad)),
                Err(EngineError::UnsupportedHost(_))
            ));
        }
        assert!(path_segment("weft").is_ok());
        assert!(path_segment("../containers").is_err());
    }

    #[test]
    fn a_missing_daemon_is_not_running() {
        let e = Engine::at(Path::new("/nonexistent/docker.sock"));
        assert!(!e.ping());
        assert!(matches!(e.network("weft"), Err(EngineError::NotRunning(_))));
    }

    #[test]
    fn network_descriptions_decode() {
        let n: DockerNetwork = serde_json::from_str(
            r#"{"Name":"blue","Id":"63d6","Driver":"weft","Options":{"com.docker.network.driver.mtu":"1400"},"Containers":{}}"#,
        )
        .unwrap();
        assert_eq!(n.name, "blue");
        assert_eq!(n.options.unwrap().len(), 1);
        let bare: DockerNetwork =
            serde_json::from_str(r#"{"Name":"weft","Driver":"weft","Options":null}"#).unwrap();
        assert_eq!(bare.options, None);
    }
}
