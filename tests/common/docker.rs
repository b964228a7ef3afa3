//! A real Docker engine per lab host: `dockerd` started by the test inside the host's
//! network namespace, with its own roots and socket, stopped by pid, and everything it
//! made removed on drop, even when the test failed.
//!
//! Per runtimes.md: `ip netns exec` remounts /sys, so the cgroup mounts are made again
//! inside before dockerd starts; each host's dockerd finds its own weft plugin through
//! `/etc/netns/<ns>/docker/plugins/weft.spec` (the directory exists before the exec, the
//! router's plugin writes the spec); the image is a `docker import` of a rootfs made of
//! Debian's busybox-static (no registry).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Lab, wait_for};

/// The image every test container runs.
pub const IMAGE: &str = "weft-busybox:latest";
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const BUSYBOX: &str = "/bin/busybox";

/// Whether the Docker tests can run here: root, dockerd, docker and busybox present.
/// Says why not (and panics under `CI=true`, which must not skip).
pub fn available(test: &str) -> bool {
    let missing: Vec<&str> = [DOCKER, DOCKERD, BUSYBOX]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test} needs Docker and busybox-static ({} missing; .ci/run installs docker.io busybox-static)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}, and CI=true: refusing to skip");
    }
    eprintln!("SKIPPED {why}");
    false
}

/// The shell lines that mount the root namespace's cgroup hierarchies again (in order:
/// the tmpfs first), for a shell started by `ip netns exec`.
fn cgroup_mounts() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let mut script = String::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [source, target, fstype, options, ..] = f[..] else {
            continue;
        };
        if target == "/sys/fs/cgroup" || target.starts_with("/sys/fs/cgroup/") {
            script.push_str(&format!(
                "mkdir -p {target} && mount -t {fstype} -o {options} {source} {target} || exit 1\n"
            ));
        }
    }
    script
}

/// Makes the busybox rootfs tarball (once per lab) and returns its path.
fn busybox_tar(lab: &Lab) -> PathBuf {
    let tar = lab.tmp("busybox.tar");
    if tar.exists() {
        return tar;
    }
    let root = lab.tmp("busybox-root");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}

/// One host's dockerd.
pub struct Dockerd {
    /// The host's short name in the lab.
    pub host: String,
    ns: String,
    root: PathBuf,
    etc: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd in `host`'s namespace with `--iptables=false`, and `--bridge=none`
    /// unless `extra` sets up Docker's bridge (`--bip`, `--bridge`); waits until it
    /// answers, and imports the test image.
    pub fn start(lab: &Lab, host: &str, extra: &[&str]) -> Self {
        let ns = lab.ns(host);
        let etc = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(etc.join("docker/plugins"))
            .expect("create /etc/netns/NS/docker/plugins");
        let mut d = Self {
            host: host.to_string(),
            ns,
            // Short: unix socket paths under it must stay below 108 bytes.
            root: lab.tmp(&format!("{host}-dk")),
            etc,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        d.launch();
        let tar = busybox_tar(lab);
        d.ok(&["import", tar.to_str().unwrap(), IMAGE]);
        d
    }

    /// Starts (again) the daemon process and waits until it answers.
    pub fn launch(&mut self) {
        assert!(
            self.child.is_none(),
            "dockerd on {} already runs",
            self.host
        );
        std::fs::create_dir_all(&self.root).unwrap();
        let r = self.root.display();
        let bridge = self
            .extra
            .iter()
            .any(|a| a.starts_with("--bip") || a.starts_with("--bridge"));
        let script = format!(
            "{}exec {DOCKERD} {} --iptables=false --ip-masq=false --ip-forward=false \
             --storage-driver overlay2 --data-root {r}/data --exec-root {r}/exec \
             --pidfile {r}/dockerd.pid -H unix://{r}/docker.sock {}\n",
            cgroup_mounts(),
            if bridge { "" } else { "--bridge=none" },
            self.extra.join(" ")
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("dockerd.log"))
            .unwrap();
        use std::os::unix::process::CommandExt as _;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        let sock = self.socket();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "dockerd on {} exited ({status}):\n{}",
                    self.host,
                    self.log()
                );
            }
            if weft::docker::engine::Engine::at(&sock).ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd on {} did not answer within 60 s:\n{}",
                self.host,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 60 s) and waits until it is gone;
    /// containers it ran are stopped by it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_leftovers();
    }

    /// Kills what outlived dockerd and is ours: its containerd and shims, whose command
    /// lines name this daemon's exec root.
    fn kill_leftovers(&self) {
        let root = format!("{}/exec/", self.root.display());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&root) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// The daemon's API socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("docker.sock")
    }

    /// `DOCKER_HOST` for this daemon.
    pub fn host_env(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Where this host's weft Docker plugin listens (a spec file points dockerd there).
    pub fn plugin_socket(&self) -> PathBuf {
        let dir = self.root.parent().unwrap_or(&self.root);
        dir.join(format!("{}-weft-plugin.sock", self.host))
    }

    /// The spec file the plugin writes, as the root namespace sees it.
    pub fn spec_file(&self) -> PathBuf {
        self.etc.join("docker/plugins/weft.spec")
    }

    /// dockerd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .args(args)
            .env("DOCKER_HOST", self.host_env())
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Runs the docker CLI and panics with its output if it fails; returns stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "`docker {}` on {} failed: {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            self.host,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs the docker CLI expecting failure; returns stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "`docker {}` on {} unexpectedly succeeded: {}",
            args.join(" "),
            self.host,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// [`ok`](Self::ok) of a command line given as one string of words (no quoting).
    pub fn ok_words(&self, words: &str) -> String {
        self.ok(&words.split_whitespace().collect::<Vec<_>>())
    }

    /// [`err`](Self::err) of a command line given as one string of words (no quoting).
    pub fn err_words(&self, words: &str) -> String {
        self.err(&words.split_whitespace().collect::<Vec<_>>())
    }

    /// `docker run -d --init --name NAME --net NET [opts] IMAGE sleep 3600`.
    pub fn run(&self, name: &str, net: &str, opts: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--init", "--name", name, "--net", net];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "sleep", "3600"]);
        self.ok(&args)
    }

    /// `docker network create -d weft --subnet SUBNET [--ip-range RANGE] NAME` (Docker's
    /// default IPAM).
    pub fn create_weft_network(&self, name: &str, subnet: &str, range: Option<&str>) {
        let mut args = vec!["network", "create", "-d", "weft", "--subnet", subnet];
        if let Some(r) = range {
            args.extend(["--ip-range", r]);
        }
        args.push(name);
        self.ok(&args);
    }

    /// A container's address on a network.
    pub fn ip(&self, container: &str, net: &str) -> String {
        self.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            container,
        ])
    }

    /// A running container's pid (its network namespace is `/proc/PID/ns/net`).
    pub fn pid(&self, container: &str) -> String {
        let pid = self.ok(&["inspect", "-f", "{{.State.Pid}}", container]);
        assert!(pid != "0", "{container} on {} is not running", self.host);
        pid
    }

    /// Whether `container` can ping `ip` within `timeout` (one-second tries).
    pub fn pings(&self, container: &str, ip: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .docker(&["exec", container, "ping", "-c", "1", "-W", "1", ip])
                .status
                .success()
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }

    /// Asserts that `container` reaches `ip` within 15 s.
    pub fn assert_ping(&self, container: &str, ip: &str) {
        assert!(
            self.pings(container, ip, Duration::from_secs(15)),
            "{container} on {} cannot ping {ip}",
            self.host
        );
    }

    /// Waits until a container is running (e.g. brought back by its restart policy).
    pub fn wait_running(&self, container: &str, timeout: Duration) {
        wait_for(
            &format!("{container} to run on {}", self.host),
            timeout,
            || {
                let out = self.docker(&["inspect", "-f", "{{.State.Running}}", container]);
                (String::from_utf8_lossy(&out.stdout).trim() == "true").then_some(())
            },
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers first, so their endpoints go while weft still answers.
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        self.stop();
        self.kill_leftovers();
        let _ = std::fs::remove_dir_all(&self.etc);
        // Leftover mounts died with dockerd's mount namespace; the roots are plain files.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `weft launch ARGS` (peers, flags) on a host; with a dockerd, its plugin listens on the
/// dockerd's [`Dockerd::plugin_socket`] and talks to that dockerd. Returns once the
/// plugin's spec file is in place (launch waits for the plugin to answer).
pub fn launch(lab: &mut Lab, host: &str, dk: Option<&Dockerd>, launch_args: &[&str]) {
    let socket = dk.map(|d| d.plugin_socket().display().to_string());
    let mut args = vec!["launch"];
    if let Some(s) = &socket {
        args.extend(["--docker-plugin-socket", s.as_str()]);
    }
    args.extend(launch_args);
    let env: Vec<(&str, String)> = match dk {
        Some(d) => vec![
            ("DOCKER_HOST", d.host_env()),
            ("WEFT_NO_DOCKER_PLUGIN", "false".into()),
        ],
        None => vec![],
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = lab.weft_env(host, &env, &args);
    assert!(
        out.status.success(),
        "`weft {}` on {host} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        lab.log(host)
    );
    if let Some(d) = dk {
        assert!(
            d.spec_file().exists(),
            "no {} after launch",
            d.spec_file().display()
        );
    }
}
