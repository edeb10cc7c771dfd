//! Another machine's system bus, over SSH: `-H [USER@]HOST` as `systemctl -H` does it.
//!
//! The connection is zbus's `unixexec:` transport running `ssh -xT -- DEST systemd-stdio-bridge`:
//! D-Bus flows over ssh's standard input and output, and the bridge on the far side joins that
//! machine's system bus as an ordinary client. So everything there is what it is locally — the
//! helper's bouncer asks *that* machine's polkit about *this* connection's user there, libvirt-dbus
//! answers for that machine's domains — and nothing new listens on the network.
//!
//! The ssh program is `PASSAGE_SSH` when set (called with ssh's own arguments, as git calls
//! `GIT_SSH`), else `ssh` from `PATH`. ssh's standard error goes to a file of ours rather than to
//! the terminal: a host that cannot be reached is then one line that names it and gives ssh's
//! own reason, and a warning on a connection that works is not printed over the output.

use passage_core::i18n::trf;
use passage_core::{names, Remote};
use std::ffi::OsString;

/// Why a machine's system bus could not be reached, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// This machine's own system bus: the bus's own error, for a caller to put in words.
    #[error("{0}")]
    Local(String),
    /// Another machine: which one, and why (ssh's own last line where it said one).
    #[error("{host}: {why}")]
    Remote { host: String, why: String },
}

/// The ssh program: `PASSAGE_SSH`, else `ssh`.
pub fn ssh_program() -> OsString {
    std::env::var_os(names::SSH_ENV)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| OsString::from("ssh"))
}

/// Set by a program with no terminal to ask on (the app): ssh must not prompt, and must give
/// up on a machine that does not answer.
static NO_PROMPTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on ssh is told never to ask (no password, no unknown host key: a key, an agent and
/// a known host do it) and to give up after 15 s without an answer — for a window, where a
/// prompt on the terminal it was started from would hang it at "Reading…".
pub fn no_prompts() {
    NO_PROMPTS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The arguments ssh gets: no X11 forwarding, no terminal (the bytes are D-Bus), the
/// destination after `--` so it can never be read as an option, then the bridge (and, where
/// nobody can answer a prompt, `-oBatchMode=yes -oConnectTimeout=15` first).
pub fn ssh_args(to: &Remote) -> Vec<OsString> {
    let quiet = NO_PROMPTS
        .load(std::sync::atomic::Ordering::Relaxed)
        .then_some(["-oBatchMode=yes", "-oConnectTimeout=15"]);
    quiet
        .into_iter()
        .flatten()
        .chain(["-xT", "--", &to.destination(), names::STDIO_BRIDGE])
        .map(OsString::from)
        .collect()
}

/// The `unixexec:` address for `to`: `sh` runs ssh with its standard error sent to `log` (the
/// transport itself leaves it on ours), and is replaced by ssh at once (`exec`).
fn address(to: &Remote, log: &std::path::Path, ssh: OsString) -> zbus::Address {
    let mut args: Vec<OsString> = vec![
        "-c".into(),
        r#"log=$1; shift; exec "$@" 2>"$log""#.into(),
        "passage-ssh".into(),
        log.as_os_str().to_owned(),
        ssh,
    ];
    args.extend(ssh_args(to));
    zbus::Address::from(zbus::address::Transport::Unixexec(
        zbus::address::transport::Unixexec::new("/bin/sh".into(), None, args),
    ))
}

/// The last thing ssh (or the far side's shell) said, on one line.
fn last_words(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

/// A connection to the system bus of `on` (`None`: this machine's, or `DBUS_SYSTEM_BUS_ADDRESS`).
pub async fn system_bus(on: Option<&Remote>) -> Result<zbus::Connection, BusError> {
    system_bus_through(on, ssh_program()).await
}

/// [`system_bus`] with the ssh program given.
async fn system_bus_through(
    on: Option<&Remote>,
    ssh: OsString,
) -> Result<zbus::Connection, BusError> {
    let Some(to) = on else {
        return zbus::Connection::system()
            .await
            .map_err(|e| BusError::Local(e.to_string()));
    };
    let log = tempfile::Builder::new()
        .prefix("passage-ssh-")
        .tempfile()
        .map_err(|e| BusError::Remote {
            host: to.to_string(),
            why: trf(
                "cannot make a file for ssh's messages ({error})",
                &[("error", &e.to_string())],
            ),
        })?;
    let connected = zbus::connection::Builder::address(address(to, log.path(), ssh))
        .build()
        .await;
    connected.map_err(|e| {
        let why = match last_words(log.path()) {
            Some(said) if said.contains(names::STDIO_BRIDGE) => trf(
                "{said} (the machine needs systemd's {bridge}, as “systemctl -H” does)",
                &[("said", &said), ("bridge", names::STDIO_BRIDGE)],
            ),
            Some(said) => said,
            None => trf(
                "cannot reach its system bus over SSH ({error})",
                &[("error", &e.to_string())],
            ),
        };
        BusError::Remote {
            host: to.to_string(),
            why,
        }
    })
}

/// The helper on the system bus of `on`.
pub async fn helper_on(on: Option<&Remote>) -> Result<crate::HelperProxy<'static>, BusError> {
    let conn = system_bus(on).await?;
    crate::HelperProxy::builder(&conn)
        .destination(names::BUS_NAME)
        .path(names::OBJECT_PATH)
        .build()
        .await
        .map_err(|e| match on {
            Some(to) => BusError::Remote {
                host: to.to_string(),
                why: e.to_string(),
            },
            None => BusError::Local(e.to_string()),
        })
}

/// Another machine as the app opens it, over one connection: its host model from its helper
/// (`DescribeHost`), and its libvirt domains — those may fail on their own (libvirt-dbus not
/// installed there) without keeping the machine from opening. Errors are one line naming the
/// machine. Blocking: for a loading thread.
pub fn open_machine(
    on: &Remote,
) -> Result<
    (
        passage_core::Host,
        Result<Vec<crate::libvirt::LibvirtDomain>, String>,
    ),
    String,
> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let host = on.to_string();
    rt.block_on(async {
        let conn = system_bus(Some(on)).await.map_err(|e| e.to_string())?;
        let helper = crate::HelperProxy::builder(&conn)
            .destination(names::BUS_NAME)
            .path(names::OBJECT_PATH)
            .build()
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let json = helper
            .describe_host()
            .await
            .map_err(|e| format!("{host}: {}", crate::error_text(&e)))?;
        let model: passage_core::Host = serde_json::from_str(&json).map_err(|e| {
            trf(
                "{host}: the helper's description of the host could not be read ({error}); is the helper there older than this Passage?",
                &[("host", &host), ("error", &e.to_string())],
            )
        })?;
        let domains = crate::libvirt::Libvirt::on(conn.clone(), crate::libvirt::QEMU_PATH)
            .domains()
            .await
            .map_err(|e| format!("{host}: {e}"));
        Ok((model, domains))
    })
}

/// Follows another machine's device changes (its helper's `DeviceChanged`): `subscribed` once
/// listening, then `each` with every change until it returns false, or until `wanted` says no (asked every second, so a machine
/// no longer shown lets its ssh go even when it tells nothing); the error says why the machine
/// stopped being followed. Blocking: for a thread of its own.
pub fn follow_machine(
    on: &Remote,
    wanted: impl Fn() -> bool,
    subscribed: impl FnOnce(),
    mut each: impl FnMut(passage_core::watch::Update) -> bool,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let host = on.to_string();
    rt.block_on(async {
        let helper = helper_on(Some(on)).await.map_err(|e| e.to_string())?;
        let mut changes = helper
            .receive_device_changed()
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        // Listening now: whatever changed between the caller's reading and here is still to
        // be read.
        subscribed();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let signal = tokio::select! {
                s = changes.next() => s,
                _ = tick.tick() => {
                    if wanted() {
                        continue;
                    }
                    return Ok(());
                }
            };
            let Some(signal) = signal else { break };
            let Ok(args) = signal.args() else { continue };
            let Ok(u) = serde_json::from_str(&args.update) else {
                continue;
            };
            if !each(u) {
                return Ok(());
            }
        }
        Err(trf(
            "{host}: the connection to its system bus ended",
            &[("host", &host)],
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_gets_the_destination_after_the_options_and_the_bridge_to_run() {
        let to: Remote = "admin@pve1".parse().unwrap();
        assert_eq!(
            ssh_args(&to),
            ["-xT", "--", "admin@pve1", "systemd-stdio-bridge"].map(OsString::from)
        );
        let a = address(&to, std::path::Path::new("/tmp/log"), "ssh".into()).to_string();
        assert!(a.starts_with("unixexec:path=/bin/sh,"), "{a}");
        assert!(
            a.contains("admin%40pve1") || a.contains("admin@pve1"),
            "{a}"
        );
    }

    #[test]
    fn an_ssh_that_fails_is_one_line_naming_the_host_and_sshs_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("ssh");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Warning: something first' >&2\necho \"ssh: connect to host $3 port 22: Connection refused\" >&2\nexit 255\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let to: Remote = "down.example".parse().unwrap();
        let e = rt
            .block_on(system_bus_through(Some(&to), fake.into_os_string()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "down.example: ssh: connect to host down.example port 22: Connection refused"
        );
    }
}
