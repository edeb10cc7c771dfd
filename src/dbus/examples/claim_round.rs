//! The client half of `benches/claim-vm.sh`: one process, one bus connection, and on every
//! line read from stdin one claim of group G through the running helper — timed from the call
//! to its reply — then its release (not timed). Prints the claim's milliseconds per round.
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
        let opts = || HashMap::from([("auth.no_user_interaction", Value::from(true))]);
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
            let t0 = std::time::Instant::now();
            let claimed = helper.claim(group, opts()).await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            // Released before the answer, so the caller's next round starts from host drivers.
            let released = helper.release(group, opts()).await;
            match (claimed, released) {
                (Ok(t), Ok(_)) if t.changed => println!("{ms:.1}"),
                (Ok(_), Ok(_)) => println!("error: group {group} was claimed already"),
                (Err(e), _) => println!("error: {e}"),
                (_, Err(e)) => println!("error: release: {e}"),
            }
        }
        std::process::ExitCode::SUCCESS
    })
}
