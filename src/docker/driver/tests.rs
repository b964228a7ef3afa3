use std::sync::{Arc, Mutex};

use super::*;
use crate::docker::protocol::parse_call;

const NET_WEFT: &str = "63d668315b84475065b6058f918563cfcb08fa816f8cd9a430b9d0a9697d3e11";
const NET_BLUE: &str = "deb4ef990a19d234f6b15c3b095db0f5f6a73a2db55e88534890bb4bf970ae82";
const EP1: &str = "d9f0c7c7a2ec71198039d3ee602b030cfd1415f04d48ce7aeeb96d394c298582";

/// A router that records what it is asked and answers like the real one.
#[derive(Default)]
struct FakeRouter {
    log: Mutex<Vec<String>>,
    endpoints: Mutex<Vec<AttachedEndpoint>>,
    allocated: Mutex<BTreeMap<String, IpNet>>,
    down: Mutex<bool>,
    ipam: Mutex<Option<IpamView>>,
    next_host: Mutex<u8>,
}

impl FakeRouter {
    fn up(&self) -> Result<(), ApiFailure> {
        if *self.down.lock().unwrap() {
            Err(ApiFailure::Unavailable("weft is not running".into()))
        } else {
            Ok(())
        }
    }
    fn log(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

impl RouterApi for Arc<FakeRouter> {
    fn ping(&self) -> Result<(), ApiFailure> {
        self.up()
    }
    fn attach(&self, req: &AttachRequest) -> Result<AttachedEndpoint, ApiFailure> {
        self.up()?;
        self.log(format!(
            "attach {} net={:?} ips={:?} mtu={:?} mac={:?} owner={:?} handover={}",
            req.target,
            req.network,
            req.ips,
            req.mtu,
            req.mac.map(|m| m.to_string()),
            req.owner,
            req.handover
        ));
        let ep = AttachedEndpoint {
            owner: req.owner.clone(),
            handover_ifname: Some("wfc0000000001".into()),
            ifname: req.ifname.clone().unwrap_or_default(),
            mac: req
                .mac
                .map_or_else(|| "02:00:00:00:00:01".into(), |m| m.to_string()),
            ips: req.ips.clone(),
        };
        self.endpoints.lock().unwrap().push(ep.clone());
        Ok(ep)
    }
    fn detach(&self, owner: &str) -> Result<(), ApiFailure> {
        self.up()?;
        self.log(format!("detach {owner}"));
        self.endpoints
            .lock()
            .unwrap()
            .retain(|e| e.owner.as_deref() != Some(owner));
        Ok(())
    }
    fn endpoints(&self) -> Result<Vec<AttachedEndpoint>, ApiFailure> {
        self.up()?;
        Ok(self.endpoints.lock().unwrap().clone())
    }
    fn remove_network(&self, name: &str) -> Result<(), ApiFailure> {
        self.up()?;
        self.log(format!("network rm {name}"));
        Ok(())
    }
    fn ipam(&self) -> Result<Option<IpamView>, ApiFailure> {
        self.up()?;
        Ok(*self.ipam.lock().unwrap())
    }
    fn allocate(
        &self,
        handle: &str,
        subnet: Ipv4Net,
        address: Option<IpAddr>,
    ) -> Result<IpNet, ApiFailure> {
        self.up()?;
        self.log(format!("allocate {handle} in {subnet} {address:?}"));
        let mut n = self.next_host.lock().unwrap();
        *n += 1;
        let ip = match address {
            Some(a) => IpNet::new(a, subnet.prefix_len()).unwrap(),
            None => IpNet::V4(
                Ipv4Net::new(
                    subnet.hosts().nth(usize::from(*n)).unwrap(),
                    subnet.prefix_len(),
                )
                .unwrap(),
            ),
        };
        self.allocated
            .lock()
            .unwrap()
            .insert(handle.to_string(), ip);
        Ok(ip)
    }
    fn release(&self, handle: &str, address: Option<IpAddr>) -> Result<(), ApiFailure> {
        self.up()?;
        self.log(format!("release {handle} {address:?}"));
        self.allocated.lock().unwrap().remove(handle);
        Ok(())
    }
}

struct FakeDocker;

impl DockerApi for FakeDocker {
    fn network(&self, id: &DockerId) -> Result<Option<DockerNetwork>, ApiFailure> {
        let (name, options) = match id.as_str() {
            NET_WEFT => ("weft", BTreeMap::new()),
            NET_BLUE => (
                "blue",
                BTreeMap::from([(
                    crate::docker::protocol::MTU_OPTION.to_string(),
                    "1400".to_string(),
                )]),
            ),
            _ => return Ok(None),
        };
        Ok(Some(DockerNetwork {
            name: name.into(),
            driver: "weft".into(),
            options: Some(options),
            containers: None,
        }))
    }
}

fn plugin(store: Option<PathBuf>) -> (Arc<FakeRouter>, Plugin) {
    let router = Arc::new(FakeRouter::default());
    let p = Plugin::new(Box::new(Arc::clone(&router)), Box::new(FakeDocker), store).unwrap();
    (router, p)
}

fn call(p: &Plugin, path: &str, body: &str) -> Result<serde_json::Value, Refused> {
    p.handle(parse_call(path, body.as_bytes()).unwrap())
}

fn endpoint_body(net: &str, address: &str, mac: &str) -> String {
    format!(
        r#"{{"NetworkID":"{net}","EndpointID":"{EP1}","Interface":{{"Address":"{address}","AddressIPv6":"","MacAddress":"{mac}"}},"Options":{{}}}}"#
    )
}

fn create(p: &Plugin, net: &str, address: &str, mac: &str) -> Result<serde_json::Value, Refused> {
    call(
        p,
        "/NetworkDriver.CreateEndpoint",
        &endpoint_body(net, address, mac),
    )
}

fn ep_ref(net: &str) -> String {
    format!(r#"{{"NetworkID":"{net}","EndpointID":"{EP1}"}}"#)
}

fn tempfile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "weft-docker-plugin-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("docker-plugin.json")
}

#[test]
fn an_endpoint_is_a_handover_attach_joined_by_name_and_detached_by_owner() {
    let (router, p) = plugin(None);
    // Docker's default IPAM chose the address; Docker chose no MAC, so weft's is answered.
    let created = create(&p, NET_WEFT, "10.32.0.5/12", "").unwrap();
    let mac = stable_mac(None, "10.32.0.5".parse().unwrap()).to_string();
    assert_eq!(
        created,
        serde_json::json!({"Interface": {"MacAddress": mac}})
    );
    assert_eq!(
        router.log.lock().unwrap().last().unwrap(),
        &format!(
            "attach docker:d9f0c7c7a2ec net=None ips=[10.32.0.5/12] mtu=None mac=Some({mac:?}) \
             owner=Some(\"docker/d9f0c7c7a2ec71198039d3ee602b030cfd1415f04d48ce7aeeb96d394c298582\") handover=true"
        )
    );
    let joined = call(&p, "/NetworkDriver.Join", &ep_ref(NET_WEFT)).unwrap();
    assert_eq!(joined["InterfaceName"]["SrcName"], "wfc0000000001");
    assert_eq!(joined["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(joined["DisableGatewayService"], true);
    call(&p, "/NetworkDriver.Leave", &ep_ref(NET_WEFT)).unwrap();
    call(&p, "/NetworkDriver.DeleteEndpoint", &ep_ref(NET_WEFT)).unwrap();
    assert!(router.endpoints.lock().unwrap().is_empty());
    // A second delete (Docker retries) is not an error.
    call(&p, "/NetworkDriver.DeleteEndpoint", &ep_ref(NET_WEFT)).unwrap();
    // Join for an endpoint weft does not have says so.
    let err = call(&p, "/NetworkDriver.Join", &ep_ref(NET_WEFT)).unwrap_err();
    assert!(err.0.contains("weft has no endpoint"), "{err}");
}

#[test]
fn a_named_network_is_its_own_weft_network_with_its_options() {
    let (router, p) = plugin(None);
    let created = create(&p, NET_BLUE, "10.40.0.5/24", "02:42:0a:28:00:05").unwrap();
    // Docker gave address and MAC: nothing to answer.
    assert_eq!(created, serde_json::json!({"Interface": {}}));
    let log = router.log.lock().unwrap().last().unwrap().clone();
    assert!(
        log.contains("net=Some(\"blue\")")
            && log.contains("mtu=Some(1400)")
            && log.contains("mac=Some(\"02:42:0a:28:00:05\")"),
        "{log}"
    );
    // Deleting the Docker network drops the weft network it resolved to.
    call(
        &p,
        "/NetworkDriver.DeleteNetwork",
        &format!(r#"{{"NetworkID":"{NET_BLUE}"}}"#),
    )
    .unwrap();
    assert_eq!(
        router.log.lock().unwrap().last().unwrap(),
        "network rm blue"
    );
    // An unknown Docker network is refused with a reason.
    let other = "ab".repeat(32);
    let err = create(&p, &other, "10.1.0.2/24", "").unwrap_err();
    assert!(err.0.contains("Docker has no network"), "{err}");
}

#[test]
fn the_router_being_down_is_said_and_owed_work_is_done_later() {
    let store = tempfile("down");
    let (router, p) = plugin(Some(store.clone()));
    create(&p, NET_WEFT, "10.32.0.5/12", "").unwrap();
    *router.down.lock().unwrap() = true;
    let err = call(
        &p,
        "/NetworkDriver.CreateNetwork",
        &format!(r#"{{"NetworkID":"{NET_BLUE}","Options":{{}}}}"#),
    )
    .unwrap_err();
    assert_eq!(err.0, "weft is not running");
    let err = create(&p, NET_BLUE, "10.40.0.5/24", "").unwrap_err();
    assert_eq!(err.0, "weft is not running");
    // Deleting while the router is down succeeds for Docker and is owed.
    call(&p, "/NetworkDriver.DeleteEndpoint", &ep_ref(NET_WEFT)).unwrap();
    assert_eq!(p.retry_pending(), 1);
    // A restarted plugin still owes it.
    drop(p);
    let p = Plugin::new(
        Box::new(Arc::clone(&router)),
        Box::new(FakeDocker),
        Some(store.clone()),
    )
    .unwrap();
    *router.down.lock().unwrap() = false;
    assert_eq!(p.retry_pending(), 0);
    assert!(
        router.endpoints.lock().unwrap().is_empty(),
        "the owed detach happened"
    );
    std::fs::remove_dir_all(store.parent().unwrap()).unwrap();
}

#[test]
fn weft_ipam_pools_are_checked_and_addresses_are_released_by_their_handle() {
    let store = tempfile("ipam");
    let (router, p) = plugin(Some(store.clone()));
    let rp = |pool: &str, sub: &str, v6: bool| {
        format!(
            r#"{{"AddressSpace":"weft","Pool":"{pool}","SubPool":"{sub}","Options":{{}},"V6":{v6}}}"#
        )
    };
    // No IPAM in the router: a clear refusal.
    let err = call(&p, "/IpamDriver.RequestPool", &rp("", "", false)).unwrap_err();
    assert!(err.0.contains("no IP address management"), "{err}");
    *router.ipam.lock().unwrap() = Some(IpamView {
        range: Some("10.32.0.0/12".parse().unwrap()),
        default_subnet: Some("10.32.0.0/12".parse().unwrap()),
    });
    let granted = call(&p, "/IpamDriver.RequestPool", &rp("", "", false)).unwrap();
    assert_eq!(
        granted,
        serde_json::json!({"PoolID": "weft-10.32.0.0/12", "Pool": "10.32.0.0/12",
            "Data": {"com.docker.network.gateway": "10.32.0.0/12"}})
    );
    for (body, says) in [
        (
            rp("10.99.0.0/24", "", false),
            "outside weft's allocation range 10.32.0.0/12",
        ),
        (rp("10.32.1.5/24", "", false), "not a network address"),
        (
            rp("10.32.1.0/24", "10.33.0.0/25", false),
            "not a network inside",
        ),
        (rp("", "", true), "IPv4 only"),
    ] {
        let err = call(&p, "/IpamDriver.RequestPool", &body).unwrap_err();
        assert!(err.0.contains(says), "{body}: {err}");
    }
    let granted = call(
        &p,
        "/IpamDriver.RequestPool",
        &rp("10.32.1.0/24", "10.32.1.128/25", false),
    )
    .unwrap();
    let pool = granted["PoolID"].as_str().unwrap().to_string();
    assert_eq!(pool, "weft-10.32.1.0/24-10.32.1.128/25");

    // A dynamic address comes from the range, with the pool's prefix.
    let got = call(
        &p,
        "/IpamDriver.RequestAddress",
        &format!(r#"{{"PoolID":"{pool}","Address":"","Options":{{}}}}"#),
    )
    .unwrap();
    let address = got["Address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with("10.32.1.1") && address.ends_with("/24"),
        "{address}"
    );
    let handle = {
        let log = router.log.lock().unwrap();
        let line = log.last().unwrap();
        assert!(line.contains("in 10.32.1.128/25 None"), "{line}");
        line.split(' ').nth(1).unwrap().to_string()
    };
    // The endpoint is attached as that handle, so the router sees one owner.
    create(&p, NET_WEFT, &address, "").unwrap();
    assert!(
        router
            .log
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .contains(&format!("owner=Some(\"{handle}\")")),
        "{:?}",
        router.log.lock().unwrap()
    );
    // After a plugin restart, ReleaseAddress still finds the handle.
    drop(p);
    let p = Plugin::new(
        Box::new(Arc::clone(&router)),
        Box::new(FakeDocker),
        Some(store.clone()),
    )
    .unwrap();
    call(&p, "/NetworkDriver.DeleteEndpoint", &ep_ref(NET_WEFT)).unwrap();
    assert_eq!(
        router.log.lock().unwrap().last().unwrap(),
        &format!("detach {handle}")
    );
    let ip = address.split('/').next().unwrap();
    call(
        &p,
        "/IpamDriver.ReleaseAddress",
        &format!(r#"{{"PoolID":"{pool}","Address":"{ip}"}}"#),
    )
    .unwrap();
    assert_eq!(
        router.log.lock().unwrap().last().unwrap(),
        &format!("release {handle} Some({ip})")
    );
    // An explicit address (--ip, --gateway) has a handle named by the address.
    call(
        &p,
        "/IpamDriver.RequestAddress",
        &format!(r#"{{"PoolID":"{pool}","Address":"10.32.1.7","Options":{{"RequestAddressType":"com.docker.network.gateway"}}}}"#),
    )
    .unwrap();
    assert_eq!(
        router.log.lock().unwrap().last().unwrap(),
        &format!("allocate docker/{pool}/10.32.1.7 in 10.32.1.0/24 Some(10.32.1.7)")
    );
    let err = call(
        &p,
        "/IpamDriver.RequestAddress",
        &format!(r#"{{"PoolID":"{pool}","Address":"10.40.0.1","Options":{{}}}}"#),
    )
    .unwrap_err();
    assert!(err.0.contains("not in subnet"), "{err}");
    std::fs::remove_dir_all(store.parent().unwrap()).unwrap();
}

#[test]
fn an_allocation_the_router_could_not_answer_is_released_later() {
    let (router, p) = plugin(None);
    *router.ipam.lock().unwrap() = Some(IpamView {
        range: None,
        default_subnet: Some("10.32.0.0/12".parse().unwrap()),
    });
    *router.down.lock().unwrap() = true;
    let err = call(
        &p,
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"weft-10.32.0.0/12","Address":""}"#,
    )
    .unwrap_err();
    assert_eq!(err.0, "weft is not running");
    // The router may have allocated before the connection broke: the handle is released
    // once it answers again.
    assert_eq!(p.retry_pending(), 1);
    *router.down.lock().unwrap() = false;
    assert_eq!(p.retry_pending(), 0);
    let log = router.log.lock().unwrap();
    assert!(
        log.last()
            .unwrap()
            .starts_with("release docker/weft-10.32.0.0/12/"),
        "{log:?}"
    );
}

#[test]
fn a_mac_docker_left_empty_follows_the_address() {
    let a: IpAddr = "10.32.0.5".parse().unwrap();
    let m = stable_mac(Some("blue"), a);
    assert_eq!(
        m,
        stable_mac(Some("blue"), a),
        "the same address, the same MAC"
    );
    assert_ne!(m, stable_mac(Some("green"), a));
    assert_ne!(m, stable_mac(Some("blue"), "10.32.0.6".parse().unwrap()));
    assert!(m.is_valid_source(), "unicast");
    assert_eq!(m.0[0] & 0x02, 0x02, "locally administered");
}

#[test]
fn the_handshake_answers() {
    let (_router, p) = plugin(None);
    assert_eq!(
        call(&p, "/Plugin.Activate", "").unwrap(),
        serde_json::json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    assert_eq!(
        call(&p, "/NetworkDriver.GetCapabilities", "").unwrap(),
        serde_json::json!({"Scope": "local"})
    );
    assert_eq!(
        call(&p, "/IpamDriver.GetDefaultAddressSpaces", "").unwrap(),
        serde_json::json!({"LocalDefaultAddressSpace": "weft", "GlobalDefaultAddressSpace": "weft"})
    );
    assert_eq!(
        call(&p, "/NetworkDriver.EndpointOperInfo", &ep_ref(NET_WEFT)).unwrap(),
        serde_json::json!({"Value": {}})
    );
}
