//! weft's container image under a real engine, and its CNI installer as a kubelet's node
//! would see it: `deploy/image/build.sh` builds the image from local files, a dockerd
//! started by the test (inside a host namespace, its state in the lab) runs the router
//! from it with host networking, the image's installer writes weft-cni and its conflist
//! into a temporary root's /opt/cni/bin and /etc/cni/net.d, and cnitool drives exactly
//! those installed files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cni_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cni_support::{CniLab, netns_path, result_addresses, unavailable};
use common::wait_for;

/// A dockerd started by the test in a host namespace (runtimes.md recipe A: no bridge,
/// no iptables), stopped by pid on drop after its containers are removed.
struct Dockerd {
    child: std::process::Child,
    /// dockerd's --exec-root: it leaves namespace mounts there when it is killed.
    exec_root: PathBuf,
    host: String,
    socket: PathBuf,
    made_etc_docker: bool,
}

impl Dockerd {
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.host))
            .arg("/usr/bin/docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let out = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        if let Ok(dir) = std::fs::read_dir(self.exec_root.join("netns")) {
            for e in dir.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if self.made_etc_docker {
            let _ = std::fs::remove_dir_all("/etc/docker");
        }
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weft --home HOME ARGS` against the containerised router (not through the lab, whose
/// cleanup kills routers by the pid in a home's pidfile).
fn weft_at(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_image_runs_the_router_and_installs_what_a_kubelet_runs() {
    let test = "cni_image";
    if !Path::new("/usr/sbin/dockerd").exists() || !Path::new("/bin/busybox").exists() {
        unavailable(
            test,
            "docker.io and busybox-static are not installed (see .ci/run)",
        );
        return;
    }
    let Some(mut lab) = CniLab::new(test) else {
        return;
    };
    lab.add_ns(&["h1", "c1", "c2"]);
    let state = lab.tmp("docker");
    std::fs::create_dir_all(&state).unwrap();
    let socket = state.join("docker.sock");
    let log = std::fs::File::create(state.join("dockerd.log")).unwrap();
    let made_etc_docker = !Path::new("/etc/docker").exists();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns("h1")))
        .arg("dockerd")
        .args([
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ])
        .args(["--storage-driver", "overlay2"])
        .arg("--data-root")
        .arg(state.join("data"))
        .arg("--exec-root")
        .arg(state.join("exec"))
        .arg("--pidfile")
        .arg(state.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd");
    let dockerd = Dockerd {
        child,
        exec_root: state.join("exec"),
        host: lab.ns("h1"),
        socket,
        made_etc_docker,
    };
    wait_for("dockerd to answer", Duration::from_secs(60), || {
        dockerd.docker(&["version"]).status.success().then_some(())
    });

    // The image, built by the repository's script from local files only.
    let tag = format!("weft-test-{}:latest", lab.ns("img").to_lowercase());
    let build = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/image/build.sh"))
        .arg(&tag)
        .env("WEFT_BIN", env!("CARGO_BIN_EXE_weft"))
        .env(
            "DOCKER_HOST",
            format!("unix://{}", dockerd.socket.display()),
        )
        .env(
            "PATH",
            format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&build, "deploy/image/build.sh");

    // The router from the image, as the DaemonSet runs it: host network, network admin,
    // host pids, its home on the host.
    let home = lab.tmp("router-home");
    std::fs::create_dir_all(&home).unwrap();
    let mount = format!("{}:/weft", home.display());
    ok(
        &dockerd.docker(&[
            "run",
            "-d",
            "--name",
            "weft-router",
            "--network",
            "host",
            "--pid",
            "host",
            // The DaemonSet is privileged; this machine lacks CAP_SYS_RESOURCE, which
            // --privileged asks for, so the capabilities weft needs are named instead.
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "NET_RAW",
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "-v",
            &mount,
            "--mount",
            "type=bind,source=/run/netns,target=/run/netns,bind-propagation=rslave",
            &tag,
            "--home",
            "/weft",
            "launch",
            "--foreground",
        ]),
        "docker run (router)",
    );
    wait_for(
        "the containerised router's API",
        Duration::from_secs(30),
        || weft_at(&home, &["status"]).status.success().then_some(()),
    );
    let status =
        String::from_utf8_lossy(&weft_at(&home, &["status", "--json"]).stdout).into_owned();
    let status: weft::api::report::StatusReport = serde_json::from_str(&status).unwrap();
    assert_eq!(status.networks[0].name, "default", "{status:?}");

    // The init step, into a temporary root, as onto a node.
    let node = lab.tmp("node");
    let (bin_dir, conf_dir) = (node.join("opt/cni/bin"), node.join("etc/cni/net.d"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&conf_dir).unwrap();
    let sock = home.join("weft.sock").display().to_string();
    let (vb, vc) = (
        format!("{}:/host/opt/cni/bin", bin_dir.display()),
        format!("{}:/host/etc/cni/net.d", conf_dir.display()),
    );
    let out = ok(
        &dockerd.docker(&[
            "run",
            "--rm",
            "-v",
            &vb,
            "-v",
            &vc,
            "--entrypoint",
            "/usr/bin/weft-install-cni",
            &tag,
            "--socket",
            &sock,
        ]),
        "docker run (install-cni)",
    );
    assert!(
        out.contains("weft-cni") && out.contains("10-weft.conflist"),
        "{out}"
    );
    for p in ["weft-cni", "portmap", "loopback"] {
        assert!(bin_dir.join(p).exists(), "{p} not installed: {out}");
    }
    let conflist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(conf_dir.join("10-weft.conflist")).unwrap()).unwrap();
    assert_eq!(conflist["name"], "weft");
    assert_eq!(conflist["plugins"][0]["type"], "weft-cni");
    assert_eq!(conflist["plugins"][1]["type"], "portmap");

    // The DaemonSet runs this same installer into the node's /opt/cni/bin and /etc/cni/net.d.
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/weft.yaml"),
    )
    .unwrap();
    for needed in [
        "/usr/bin/weft-install-cni",
        "/host/opt/cni/bin",
        "/host/etc/cni/net.d",
        "hostNetwork: true",
    ] {
        assert!(manifest.contains(needed), "the DaemonSet lacks {needed}");
    }

    // What a kubelet's runtime would run: only the installed files.
    let env = [
        ("CNI_PATH", bin_dir.display().to_string()),
        ("NETCONFPATH", conf_dir.display().to_string()),
    ];
    let cnitool = |verb: &str, c: &str, args: &str| -> Output {
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("h1")])
            .arg(&lab.cnitool)
            .args([verb, "weft", &netns_path(&lab.ns(c))])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CNI_ARGS", args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let r1: serde_json::Value = serde_json::from_str(&ok(
        &cnitool("add", "c1", "IP=10.72.0.5/24"),
        "cnitool add c1",
    ))
    .unwrap();
    assert_eq!(result_addresses(&r1), ["10.72.0.5/24"]);
    ok(&cnitool("add", "c2", "IP=10.72.0.6/24"), "cnitool add c2");
    lab.assert_ping("c1", "10.72.0.6");
    ok(&cnitool("check", "c1", ""), "cnitool check");
    for c in ["c1", "c2"] {
        ok(&cnitool("del", c, ""), "cnitool del");
        ok(&cnitool("del", c, ""), "cnitool del again");
    }
    let ps = String::from_utf8_lossy(&weft_at(&home, &["ps"]).stdout).into_owned();
    assert!(ps.trim().is_empty(), "{ps}");
    ok(&weft_at(&home, &["stop"]), "weft stop");
    drop(dockerd);
}
