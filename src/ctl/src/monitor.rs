//! `passagectl monitor`: device events (add, remove, bind, unbind, change) as they happen.

use crate::common::print;
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};
use passage_core::{report, scan, watch, HostRoot, Remote};

pub fn run(cli: &Cli, as_json: bool, max_events: Option<u64>) -> Result<u8, Failure> {
    if let Some(r) = cli.remote()? {
        return remote(r, as_json, max_events);
    }
    if cli.demo.is_some() || !cli.root.is_empty() {
        return Err(Failure(tr(
            "monitor watches this host's live devices; it cannot be used with --root or --demo",
        )));
    }
    let root = HostRoot::open("/")?;
    let mut host = scan::scan(&root)?;
    let mon = watch::Monitor::open()?;
    if !as_json {
        print(&report::monitor_header_text(mon.source))?;
    }
    let mut seen = 0u64;
    loop {
        for ev in mon.wait(None)? {
            let u = watch::apply(&mut host, &root, &ev)?;
            print(&if as_json {
                report::update_json(&u)?
            } else {
                report::update_text(&u)
            })?;
            seen += 1;
            if max_events.is_some_and(|m| seen >= m) {
                return Ok(0);
            }
        }
    }
}

/// Another machine's device events: the `DeviceChanged` signals of its helper, which follows
/// that kernel's events into the model it keeps (the same updates, printed the same way).
fn remote(r: &Remote, as_json: bool, max_events: Option<u64>) -> Result<u8, Failure> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let host = r.to_string();
    rt.block_on(async move {
        let h = passage_dbus::remote::helper_on(Some(r))
            .await
            .map_err(|e| Failure(e.to_string()))?;
        let said = |e: zbus::Error| Failure(format!("{host}: {e}"));
        // Subscribed before the header is printed: a script that waits for the header and
        // then acts sees every event that follows.
        let mut events = h.receive_device_changed().await.map_err(said)?;
        // The helper answers (it is installed and reachable) before anything is promised.
        h.version().await.map_err(said)?;
        if !as_json {
            print(&report::monitor_header_text(&trf(
                "the Passage helper on {host}",
                &[("host", &host)],
            )))?;
        }
        let mut seen = 0u64;
        while let Some(signal) = events.next().await {
            let update = signal.args().map_err(said)?.update;
            let u: watch::Update = match serde_json::from_str(&update) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!("{host}: an event this passagectl cannot read ({e}): {update}");
                    continue;
                }
            };
            print(&if as_json {
                report::update_json(&u)?
            } else {
                report::update_text(&u)
            })?;
            seen += 1;
            if max_events.is_some_and(|m| seen >= m) {
                return Ok(0);
            }
        }
        Err(Failure(trf(
            "{host}: the connection to its system bus ended",
            &[("host", &host)],
        )))
    })
}
