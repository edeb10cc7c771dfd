//! `passagectl cluster export`: one device mapping for several hosts, each read on its own —
//! live through each machine's helper (`-H`, repeated, asked side by side) or from recordings
//! (`--root`, repeated).
//!
//! A machine that cannot be reached is one line on standard error naming it and why; the
//! others are exported all the same and the exit status is 1, so a script sees the gap.

use crate::common::print;
use crate::Failure;
use passage_core::cli::ctl::{Cli, ClusterAction};
use passage_core::export::cluster::{self, ClusterFormat, Node, Pick};
use passage_core::i18n::{tr, trf};
use passage_core::{scan, store, HostRoot, Remote};

pub fn run(cli: &Cli, action: &ClusterAction) -> Result<u8, Failure> {
    let ClusterAction::Export {
        format,
        devices,
        output,
    } = action;
    let format: ClusterFormat = format.parse().map_err(Failure)?;
    let pick = Pick::parse(devices).map_err(Failure)?;
    let (nodes, missing) = if !cli.host.is_empty() {
        live(&cli.host)?
    } else if !cli.root.is_empty() {
        (recorded(cli)?, Vec::new())
    } else {
        return Err(Failure(tr(
            "cluster export needs its nodes: -H HOST for each live machine, or --root DIR for each recording",
        )));
    };
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Failure(trf(
            "two nodes are called {node}; each node needs its own name",
            &[("node", w[0])],
        )));
    }
    for m in &missing {
        eprintln!("passagectl: {m}");
    }
    if nodes.is_empty() {
        return Err(Failure(tr("no node could be read; nothing was exported")));
    }
    let (text, notes) = cluster::export(&nodes, format, &pick);
    for n in &notes {
        eprintln!("passagectl: {} {n}", tr("note:"));
    }
    match output {
        Some(path) => store::write_atomic(path, text.as_bytes())
            .map_err(|err| Failure(format!("{}: {err}", path.display())))?,
        None => print(&text)?,
    }
    Ok(u8::from(!missing.is_empty()))
}

/// Each machine's host model from its helper, all asked at once; those that could not be read
/// as one line each.
fn live(remotes: &[Remote]) -> Result<(Vec<Node>, Vec<String>), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answers = rt.block_on(async {
        let mut asked = tokio::task::JoinSet::new();
        for (i, r) in remotes.iter().cloned().enumerate() {
            asked.spawn(async move {
                let host = async {
                    let h = passage_dbus::remote::helper_on(Some(&r))
                        .await
                        .map_err(|e| e.to_string())?;
                    let json = h
                        .describe_host()
                        .await
                        .map_err(|e| format!("{r}: {}", passage_dbus::error_text(&e)))?;
                    serde_json::from_str::<passage_core::Host>(&json).map_err(|e| {
                        trf(
                            "{host}: the helper's description of the host could not be read ({error})",
                            &[("host", &r.to_string()), ("error", &e.to_string())],
                        )
                    })
                }
                .await;
                (i, r, host)
            });
        }
        let mut all = Vec::new();
        let mut lost = 0;
        while let Some(done) = asked.join_next().await {
            match done {
                Ok(a) => all.push(a),
                Err(_) => lost += 1,
            }
        }
        all.sort_by_key(|(i, _, _)| *i);
        (all, lost)
    });
    let (answers, lost) = answers;
    let mut nodes = Vec::new();
    let mut missing = Vec::new();
    if lost > 0 {
        missing.push(trf(
            "{n} machine(s) could not be asked (the request failed inside passagectl)",
            &[("n", &lost.to_string())],
        ));
    }
    for (_, r, host) in answers {
        match host {
            // The node's name is the host as given, without the user: Proxmox and Kubernetes
            // know nodes by their host names.
            Ok(host) => nodes.push(Node {
                name: r.host.clone(),
                host,
            }),
            Err(e) => missing.push(e),
        }
    }
    Ok((nodes, missing))
}

/// Each recording read, named after its directory (name the directories after the nodes).
fn recorded(cli: &Cli) -> Result<Vec<Node>, Failure> {
    cli.root
        .iter()
        .map(|dir| {
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_else(|| dir.display().to_string());
            let root = HostRoot::open(dir)?;
            Ok(Node {
                name,
                host: scan::scan(&root)?,
            })
        })
        .collect()
}
