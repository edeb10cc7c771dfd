//! The client half of `benches/claim-vm.sh`: one process, one bus connection, and on every
//! line read from stdin one claim of group G through the running helper — timed from the call
//! to its reply — then its release (not timed). Prints the claim's milliseconds per round, then
//! two bare round trips for scale: the bus's `Peer.Ping` answered by the helper's connection,
//! and `Claims` (authorization and a read of the state directory, nothing written).
//! Process start and connection setup are paid once, as a running app or libvirt hook pays
//! them, so what is timed is the service's claim: authorization, the fresh read, the journal,
//! the writes, the checks and the reply.
//!
//!     claim_round GROUP    (DBUS_SYSTEM_BUS_ADDRESS names the bus)

use std::collections::HashMap;
use std::io::BufRead;
use zbus::Variant as Value;

fn main() -> std::process::ExitCode {
    let Some(group) = std::env::args().nth(1).and_then(|g| g.parse::<u32>().ok()) else {
        eprintln!("usage: claim_round GROUP");
        return std::process::ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("claim_round: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let helper = match passage_dbus::connect().await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("claim_round: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        // The same destination and path as the helper's proxy, so the helper's own
        // connection answers.
        let peer = zbus::fdo::PeerProxy::builder(helper.inner().connection())
            .destination(helper.inner().destination().to_owned())
            .path(helper.inner().path().to_owned());
        let peer = match peer.build().await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("claim_round: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        let opts = || HashMap::from([("auth.no_user_interaction", Value::from(true))]);
        // Lines are read on a thread of their own: the runtime keeps serving the connection
        // while the client waits for the next round, as a running app's does (read on the
        // runtime's one thread, stdin would stop it between rounds).
        let (go, mut rounds) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() || go.send(()).is_err() {
                    break;
                }
            }
        });
        while rounds.recv().await.is_some() {
            let (t0, sent) = (std::time::Instant::now(), std::time::SystemTime::now());
            let claimed = helper.claim(group, opts()).await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            // The wall clock too (to stderr, the job's client.log): beside the helper's own
            // log of the claim, it tells the request's way from the reply's.
            let epoch = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_default()
            };
            eprintln!(
                "claim sent at {:.6} answered at {:.6}",
                epoch(sent),
                epoch(std::time::SystemTime::now())
            );
            // Released before the answer, so the caller's next round starts from host drivers.
            let released = helper.release(group, opts()).await;
            let t1 = std::time::Instant::now();
            let pinged = peer.ping().await;
            let ping = t1.elapsed().as_secs_f64() * 1000.0;
            let t2 = std::time::Instant::now();
            let listed = helper.claims().await;
            let read = t2.elapsed().as_secs_f64() * 1000.0;
            if let Err(e) = pinged {
                println!("error: ping: {e}");
                continue;
            }
            if let Err(e) = listed {
                println!("error: claims: {e}");
                continue;
            }
            match (claimed, released) {
                (Ok(t), Ok(_)) if t.changed => println!("{ms:.1} {ping:.1} {read:.1}"),
                (Ok(_), Ok(_)) => println!("error: group {group} was claimed already"),
                (Err(e), _) => println!("error: {e}"),
                (_, Err(e)) => println!("error: release: {e}"),
            }
        }
        std::process::ExitCode::SUCCESS
    })
}
