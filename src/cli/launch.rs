//! `weft launch`: start the router in the background and return once its API answers,
//! or run it in the foreground.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser as _;

use super::LaunchArgs;
use crate::api::client::Client;
use crate::home::Home;
use crate::router::{PeerSpec, Ports, RouterOptions};
use crate::state::State;

/// How long `launch` waits for a new router's API before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that may carry the mesh password instead of a file.
const PASSWORD_ENV: &str = "WEFT_PASSWORD";

pub(super) fn run(home: &Home, args: LaunchArgs) -> anyhow::Result<()> {
    if args.foreground {
        let options = crate::daemon::DaemonOptions {
            log_filter: args.log_level.clone(),
            docker_plugin: (!args.no_docker_plugin).then(|| args.docker_plugin_paths()),
            metrics_addr: args.metrics_addr.0,
            router: router_options(&args)?,
        };
        return crate::daemon::run(home, &options);
    }
    // A router killed a moment ago may still hold the lock while it exits: wait for it,
    // and refuse only a router that is really running.
    crate::pidfile::ensure_not_running(&home.pidfile())?;
    // A peer on this command line that does not resolve is the caller's mistake: say so
    // now, before anything starts.
    resolve_peers(&args)?;
    // args_os: std::env::args panics on an argument that is not UTF-8 (e.g. a path).
    let argv = router_argv(&std::env::args_os().skip(1).collect::<Vec<_>>(), &args)?;
    let replaced_vni = State::load(&home.state_file())
        .ok()
        .and_then(|s| crate::router::default_vni(s.default_vni, args.vni).1);
    home.ensure()?;
    for why in home.unsafe_dirs() {
        eprintln!("weft: warning: {why}");
    }
    let log_path = home.log_file();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open log file {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the weft executable")?;
    let mut child = {
        use std::os::unix::process::CommandExt as _;
        Command::new(exe)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .context("cannot duplicate log file handle")?,
            )
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal that ran `launch` must not
            // reach the router.
            .process_group(0)
            .spawn()
            .context("cannot start the weft router process")?
    };
    let api = Client::new(&home.socket());
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .context("cannot watch the router process")?
        {
            let why = router_error(&log_path, log_start)
                .unwrap_or_else(|| format!("the weft router exited during startup ({status})"));
            anyhow::bail!("{why}; see {}", log_path.display());
        }
        if api.ping() {
            println!(
                "weft router started (pid {}, log {})",
                child.id(),
                log_path.display()
            );
            if let (Some(old), Some(new)) = (replaced_vni, args.vni) {
                println!("the default network's VNI changed from {old} to {new}");
            }
            if !args.no_docker_plugin {
                crate::docker::supervise::after_launch(home, &args.docker_plugin_paths());
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "the weft router did not answer within {}s and was stopped; see {}",
                READY_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The router's options from the command line: the password read and turned into a key,
/// the peers resolved, the nickname defaulted to the host name. The router never sees
/// the command line or the environment.
fn router_options(args: &LaunchArgs) -> anyhow::Result<RouterOptions> {
    let nickname = args.nickname.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "weft".into())
    });
    Ok(RouterOptions {
        peers: resolve_peers(args)?,
        vni: args.vni,
        ports: Ports {
            vxlan: args.vxlan_port,
            mesh: args.port,
            tunnel: args.tunnel_port,
        },
        mtu: args.mtu,
        nickname,
        gso: !args.no_gso,
        psk: password_psk(args)?,
        trusted_subnets: args.trusted_subnets.clone(),
        discovery: !args.no_discovery,
        conn_limit: args.conn_limit,
    })
}

/// The peers on the command line, resolved: one that does not resolve is the caller's
/// mistake, said before anything starts.
fn resolve_peers(args: &LaunchArgs) -> anyhow::Result<Vec<PeerSpec>> {
    args.peers
        .iter()
        .map(|spec| {
            Ok(PeerSpec {
                spec: spec.clone(),
                addr: crate::router::resolve_peer(spec, args.vxlan_port)?,
            })
        })
        .collect()
}

/// The pre-shared key derived from `--password-file` or `WEFT_PASSWORD`, if either is set.
fn password_psk(args: &LaunchArgs) -> anyhow::Result<Option<[u8; 32]>> {
    let password = match (&args.password_file, std::env::var_os(PASSWORD_ENV)) {
        (Some(path), _) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            // A trailing newline is an editor's, not the password's.
            let mut text = text.as_slice();
            while let Some(rest) = text
                .strip_suffix(b"\n")
                .or_else(|| text.strip_suffix(b"\r"))
            {
                text = rest;
            }
            anyhow::ensure!(
                !text.is_empty(),
                "the password file {} is empty",
                path.display()
            );
            text.to_vec()
        }
        (None, Some(env)) => {
            anyhow::ensure!(!env.is_empty(), "{PASSWORD_ENV} is set but empty");
            env.into_encoded_bytes()
        }
        (None, None) => return Ok(None),
    };
    let psk = tunnel::crypto::password::psk_from_password(&password)
        .map_err(|e| anyhow::anyhow!("bad password: {e}"))?;
    Ok(Some(psk))
}

/// The router process's arguments: ours with `--foreground` right after the `launch` verb
/// (after a `--`, anything appended would be taken for a PEER). Checked by parsing them
/// back, so a command line this cannot place the flag in is an error, not a wrong router.
fn router_argv(ours: &[OsString], parsed: &LaunchArgs) -> anyhow::Result<Vec<OsString>> {
    let mut i = 0;
    let verb = loop {
        // Not-UTF-8 arguments (paths) are fine: none of them is the verb or `--home`.
        match ours.get(i).map(|a| a.to_str()) {
            Some(Some("--home")) => i += 2,
            Some(Some(a)) if a.starts_with("--home=") => i += 1,
            Some(Some("launch")) => break Some(i),
            _ => break None,
        }
    };
    let argv = verb.map(|v| {
        let mut argv = ours.to_vec();
        argv.insert(v + 1, "--foreground".into());
        argv
    });
    let reparsed = argv.as_ref().and_then(|argv| {
        match super::Cli::try_parse_from(
            std::iter::once(OsString::from("weft")).chain(argv.iter().cloned()),
        ) {
            Ok(super::Cli {
                command: super::Command::Launch(a),
                ..
            }) => Some(a),
            _ => None,
        }
    });
    match (argv, reparsed) {
        (Some(argv), Some(a)) if a.foreground && a.peers == parsed.peers => Ok(argv),
        _ => anyhow::bail!("cannot build the router's command line from {ours:?}"),
    }
}

/// The one-line error a router that failed to start printed last (`weft: ...`), from what
/// it logged since `from`.
fn router_error(path: &std::path::Path, from: u64) -> Option<String> {
    let mut text = String::new();
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("weft: "))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn launch_args(s: &str) -> LaunchArgs {
        match super::super::Cli::try_parse_from(std::iter::once("weft").chain(s.split_whitespace()))
        {
            Ok(super::super::Cli {
                command: super::super::Command::Launch(a),
                ..
            }) => a,
            other => panic!("not a launch: {other:?}"),
        }
    }

    #[test]
    fn foreground_goes_right_after_the_verb_even_before_a_double_dash() {
        for (ours, want) in [
            ("launch -- h1 h2", "launch --foreground -- h1 h2"),
            (
                "--home /x launch h1 --vni 3",
                "--home /x launch --foreground h1 --vni 3",
            ),
            ("--home=/x launch", "--home=/x launch --foreground"),
            (
                "--home launch launch -- x",
                "--home launch launch --foreground -- x",
            ),
        ] {
            assert_eq!(
                router_argv(&argv(ours), &launch_args(ours)).unwrap(),
                argv(want),
                "{ours}"
            );
        }
    }

    #[test]
    fn an_unplaceable_command_line_is_an_error() {
        let parsed = launch_args("launch h1");
        assert!(router_argv(&argv("status"), &parsed).is_err());
        assert!(router_argv(&argv("launch h2"), &parsed).is_err());
    }

    #[test]
    fn arguments_that_are_not_utf8_pass_through() {
        use std::os::unix::ffi::OsStrExt as _;
        let path = OsString::from(std::ffi::OsStr::from_bytes(b"/tmp/w\xffeft"));
        let ours = vec![
            "--home".into(),
            path.clone(),
            "launch".into(),
            "--password-file".into(),
            path.clone(),
        ];
        let want = vec![
            "--home".into(),
            path.clone(),
            "launch".into(),
            "--foreground".into(),
            "--password-file".into(),
            path,
        ];
        assert_eq!(router_argv(&ours, &launch_args("launch")).unwrap(), want);
    }

    #[test]
    fn default_ports_are_the_crates_own_and_they_agree() {
        let args = launch_args("launch");
        let ports = Ports {
            vxlan: args.vxlan_port,
            mesh: args.port,
            tunnel: args.tunnel_port,
        };
        assert_eq!(ports, Ports::default());
        // The mesh crate announces these defaults to peers; it cannot see tunnel's.
        assert_eq!(
            mesh::protocol::DEFAULT_VXLAN_PORT,
            tunnel::vxlan::DEFAULT_PORT
        );
        assert_eq!(
            mesh::protocol::DEFAULT_TUNNEL_PORT,
            tunnel::crypto::datagram::DEFAULT_PORT
        );
    }

    #[test]
    fn the_password_file_is_read_at_the_edge_without_its_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("weft-launch-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (with_nl, without, empty) = (dir.join("a"), dir.join("b"), dir.join("c"));
        std::fs::write(&with_nl, "s3cret\r\n").unwrap();
        std::fs::write(&without, "s3cret").unwrap();
        std::fs::write(&empty, "\n").unwrap();
        let options = |path: &std::path::Path| {
            router_options(&launch_args(&format!(
                "launch --password-file {} --vni 7 --nickname n1",
                path.display()
            )))
        };
        let a = options(&with_nl).unwrap();
        assert!(a.psk.is_some());
        assert_eq!(a.psk, options(&without).unwrap().psk);
        assert_eq!(a.vni.map(tunnel::Vni::get), Some(7));
        assert_eq!(a.nickname, "n1");
        assert!(
            !format!("{a:?}").contains(&format!("{:?}", a.psk)),
            "the key stays out of Debug"
        );
        let err = options(&empty).unwrap_err();
        assert!(format!("{err:#}").contains("is empty"), "{err:#}");
        let err = options(&dir.join("missing")).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read the password file"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_router_error_is_its_last_weft_line_since_launch() {
        let path = std::env::temp_dir().join(format!("weft-launch-log-{}", std::process::id()));
        let old = "weft: an older failure\n";
        std::fs::write(
            &path,
            format!("{old}2026-01-01T00:00:00Z  INFO weft::daemon: starting\nweft: router failed to start: port busy\n"),
        )
        .unwrap();
        assert_eq!(
            router_error(&path, old.len() as u64).as_deref(),
            Some("router failed to start: port busy")
        );
        std::fs::write(&path, "thread 'main' panicked\n").unwrap();
        assert_eq!(router_error(&path, 0), None);
        std::fs::remove_file(&path).unwrap();
    }
}
