//! weft's CNI plugin under real container runtimes: rootful Podman (its CNI backend)
//! with containers on two weft hosts, and containerd's `ctr run --cni`.
//!
//! Each runtime runs "on a host" through `nsenter --net` (not `ip netns exec`, which
//! remounts /sys and so hides the cgroup mounts runc needs). Everything a runtime makes
//! outside the lab is removed on drop: Podman's storage (`system reset`), containerd's
//! daemon (by pid) and its namespace's run directory, the links put in /opt/cni/bin and
//! the conflist put in /etc/cni/net.d.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cni_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cni_support::{CniLab, DEBIAN_PLUGINS, unavailable};
use common::wait_for;
use serde_json::json;

const H1: &str = "192.168.61.1";
const H2: &str = "192.168.61.2";

fn two_hosts(test: &str) -> Option<CniLab> {
    let mut lab = CniLab::new(test)?;
    lab.add_ns(&["h1", "h2", "peer"]);
    lab.link("h1", &format!("{H1}/24"), "h2", &format!("{H2}/24"));
    lab.weft_ok("h1", &["launch", H2]);
    lab.weft_ok("h2", &["launch", H1]);
    Some(lab)
}

/// A busybox root file system (busybox-static and its applet links) in `dir`, and its
/// tarball for `podman import`.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    let tar = dir.with_extension("tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    tar
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

fn installed(test: &str, tools: &[&str]) -> bool {
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            unavailable(test, &format!("{t} is not installed (see .ci/run)"));
            return false;
        }
    }
    if !Path::new("/bin/busybox").exists() {
        unavailable(test, "busybox-static is not installed");
        return false;
    }
    true
}

/// Podman with its storage, run directory and configuration inside the lab.
struct Podman {
    root: PathBuf,
}

impl Podman {
    fn cmd(&self, host_ns: Option<&str>, conf: &Path, args: &[&str]) -> Output {
        let mut c = match host_ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("podman");
                c
            }
            None => Command::new("podman"),
        };
        c.arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .arg("--tmpdir")
            .arg(self.root.join("libpod"))
            .args(args)
            .env("CONTAINERS_CONF", conf)
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let conf = self.root.join("containers.conf");
        let _ = self.cmd(None, &conf, &["rm", "-af", "-t0"]);
        let _ = self.cmd(None, &conf, &["system", "reset", "-f"]);
    }
}

#[test]
fn podman_containers_on_two_weft_hosts_ping_each_other() {
    let test = "cni_podman_two_hosts";
    if !installed(test, &["podman", "nsenter"]) {
        return;
    }
    let Some(lab) = two_hosts(test) else {
        return;
    };
    let root = lab.tmp("podman");
    std::fs::create_dir_all(&root).unwrap();
    let podman = Podman { root: root.clone() };
    let tar = busybox_rootfs(&lab.tmp("bbroot"));
    let mut confs = Vec::new();
    for (host, start, end) in [
        ("h1", "10.70.0.10", "10.70.0.19"),
        ("h2", "10.70.0.20", "10.70.0.29"),
    ] {
        let net_dir = lab.tmp(&format!("podman-net-{host}"));
        std::fs::create_dir_all(&net_dir).unwrap();
        let conflist = json!({ "cniVersion": "1.0.0", "name": "weftpod", "plugins": [{
            "type": "weft-cni", "socket": lab.socket(host),
            "ipam": { "type": "host-local",
                "ranges": [[{ "subnet": "10.70.0.0/24", "rangeStart": start, "rangeEnd": end }]],
                "dataDir": lab.tmp(&format!("ipam-{host}")).display().to_string() } }] });
        std::fs::write(net_dir.join("10-weftpod.conflist"), conflist.to_string()).unwrap();
        let conf = root.join(format!("containers-{host}.conf"));
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
                 [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"{DEBIAN_PLUGINS}\"]\n\
                 network_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
                lab.bin_dir.display(),
                net_dir.display()
            ),
        )
        .unwrap();
        confs.push(conf);
    }
    // The configuration Drop resets storage with.
    std::fs::copy(&confs[0], root.join("containers.conf")).unwrap();
    let tar = tar.display().to_string();
    ok(
        &podman.cmd(
            None,
            &confs[0],
            &["import", &tar, "localhost/weft-test-busybox:latest"],
        ),
        "podman import",
    );
    let (h1, h2) = (lab.ns("h1"), lab.ns("h2"));
    let (a, b) = (lab.ns("podA"), lab.ns("podB"));
    for (host, conf, name) in [(&h1, &confs[0], &a), (&h2, &confs[1], &b)] {
        ok(
            &podman.cmd(
                Some(host),
                conf,
                &[
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "weftpod",
                    "localhost/weft-test-busybox",
                    "sleep",
                    "300",
                ],
            ),
            "podman run",
        );
    }
    let ip_of = |host: &str, conf: &Path, name: &str| -> String {
        let out = ok(
            &podman.cmd(
                Some(host),
                conf,
                &[
                    "inspect",
                    "-f",
                    "{{(index .NetworkSettings.Networks \"weftpod\").IPAddress}}",
                    name,
                ],
            ),
            "podman inspect",
        );
        out.trim().to_string()
    };
    let ip_a = ip_of(&h1, &confs[0], &a);
    let ip_b = ip_of(&h2, &confs[1], &b);
    assert!(ip_a.starts_with("10.70.0.1"), "{ip_a}");
    assert!(ip_b.starts_with("10.70.0.2"), "{ip_b}");
    for (host, conf, name, dest) in [(&h1, &confs[0], &a, &ip_b), (&h2, &confs[1], &b, &ip_a)] {
        wait_for(
            &format!("{name} to ping {dest}"),
            Duration::from_secs(15),
            || {
                podman
                    .cmd(
                        Some(host),
                        conf,
                        &["exec", name, "ping", "-c1", "-W1", dest],
                    )
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
    let mut lab = lab;
    assert_eq!(lab.endpoints("h1").len(), 1);
    // Removing the container runs DEL: the endpoint goes.
    ok(
        &podman.cmd(Some(&h1), &confs[0], &["rm", "-f", "-t0", &a]),
        "podman rm",
    );
    assert!(lab.endpoints("h1").is_empty(), "DEL did not detach");
    assert!(lab.weft_links("h1").is_empty());
    ok(
        &podman.cmd(Some(&h2), &confs[1], &["rm", "-f", "-t0", &b]),
        "podman rm",
    );
    drop(podman);
}

/// Files put outside the lab for containerd (it reads fixed paths): removed on drop,
/// and only the ones this test made.
struct HostFiles {
    made: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl HostFiles {
    fn link(&mut self, target: &Path, link: &Path) {
        if link.symlink_metadata().is_ok() {
            return;
        }
        std::os::unix::fs::symlink(target, link).unwrap();
        self.made.push(link.to_path_buf());
    }

    fn dir(&mut self, dir: &Path) {
        let mut missing = Vec::new();
        let mut d = dir.to_path_buf();
        while !d.exists() {
            missing.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        std::fs::create_dir_all(dir).unwrap();
        // Removed deepest first.
        self.dirs.extend(missing);
    }

    fn file(&mut self, path: &Path, contents: &str) {
        std::fs::write(path, contents).unwrap();
        self.made.push(path.to_path_buf());
    }
}

impl Drop for HostFiles {
    fn drop(&mut self) {
        for f in self.made.drain(..).rev() {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.drain(..) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A containerd started by the test inside a host namespace, killed by pid on drop.
struct Containerd {
    child: std::process::Child,
    address: PathBuf,
    namespace: String,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
    }
}

#[test]
fn ctr_run_with_cni_attaches_through_weft() {
    let test = "cni_containerd_ctr";
    if !installed(test, &["containerd", "ctr", "nsenter"]) {
        return;
    }
    let Some(mut lab) = two_hosts(test) else {
        return;
    };
    let rootfs = lab.tmp("bbroot");
    busybox_rootfs(&rootfs);
    // ctr runs plugins from /opt/cni/bin and takes the first conf in /etc/cni/net.d.
    let mut files = HostFiles {
        made: Vec::new(),
        dirs: Vec::new(),
    };
    let bin = Path::new("/opt/cni/bin");
    files.dir(bin);
    files.dir(Path::new("/etc/cni/net.d"));
    let plugin = format!("{}-weft", lab.ns("x"));
    files.link(Path::new(env!("CARGO_BIN_EXE_weft")), &bin.join(&plugin));
    for p in ["loopback", "host-local"] {
        files.link(&Path::new(DEBIAN_PLUGINS).join(p), &bin.join(p));
    }
    let net = format!("{}ctr", lab.ns(""));
    let conflist = json!({ "cniVersion": "1.0.0", "name": net, "plugins": [{
        "type": plugin, "socket": lab.socket("h1"),
        "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.71.0.0/24", "rangeStart": "10.71.0.30", "rangeEnd": "10.71.0.39" }]],
                  "dataDir": lab.tmp("ipam").display().to_string() } }] });
    files.file(
        &Path::new("/etc/cni/net.d").join(format!("00-{}.conflist", lab.ns("ctr"))),
        &conflist.to_string(),
    );

    let state = lab.tmp("containerd");
    std::fs::create_dir_all(&state).unwrap();
    let address = state.join("containerd.sock");
    let log = std::fs::File::create(state.join("containerd.log")).unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns("h1")))
        .arg("containerd")
        .arg("--root")
        .arg(state.join("root"))
        .arg("--state")
        .arg(state.join("state"))
        .arg("--address")
        .arg(&address)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start containerd");
    let containerd = Containerd {
        child,
        address: address.clone(),
        namespace: lab.ns("ctr"),
    };
    let h1_netns = format!("--net=/run/netns/{}", lab.ns("h1"));
    let ctr = |args: &[&str]| -> Output {
        Command::new("nsenter")
            .arg(&h1_netns)
            .arg("ctr")
            .arg("-a")
            .arg(&containerd.address)
            .arg("-n")
            .arg(&containerd.namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    wait_for("containerd to answer", Duration::from_secs(20), || {
        ctr(&["version"]).status.success().then_some(())
    });

    // A container on h2 attached the plain way, for the ctr container to reach.
    let peer = lab.ns("peer");
    lab.weft_ok("h2", &["attach", &peer, "--ip", "10.71.0.50/24"]);
    let rootfs_arg = rootfs.display().to_string();
    let id = lab.ns("ctr1");
    let out = ctr(&[
        "run",
        "--rm",
        "--cni",
        "--rootfs",
        &rootfs_arg,
        &id,
        "/bin/sh",
        "-c",
        "ip -4 -o addr show eth0; for i in 1 2 3 4 5 6 7 8 9 10; do ping -c1 -W1 10.71.0.50 >/dev/null && echo reached && exit 0; done; exit 1",
    ]);
    let text = ok(&out, "ctr run --cni");
    assert!(text.contains("10.71.0.3"), "no weft address: {text}");
    assert!(text.contains("reached"), "{text}");
    // `--rm` ran DEL: the endpoint is gone.
    assert!(lab.endpoints("h1").is_empty(), "DEL did not detach");
    assert!(lab.weft_links("h1").is_empty());
    drop(containerd);
    drop(files);
}
