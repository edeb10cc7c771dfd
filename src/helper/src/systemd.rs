//! What the helper asks systemd for: starting passage-initramfs.service or
//! passage-boot-line.service and waiting for its end. The initramfs is rebuilt, and the boot
//! configuration changed, under units that may write /etc/default and /boot, because the
//! helper's own unit keeps them read-only.

use crate::bootfix;
use crate::claim::StateDir;
use crate::persist;
use passage_core::i18n::trf;
use passage_core::names;
use passage_dbus::HelperError;
use std::path::Path;
use std::sync::Arc;
use zbus::OwnedObjectPath;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn unsubscribe(&self) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// How long a rebuild may take before the caller is told it is still running.
const REBUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// One rebuild at a time. systemd merges a start into a start job already running, so a second
/// `persist` would otherwise be told "regenerated" by a build that may have read the boot
/// layers before its change; waiting here, its own start comes after its own files.
static ONE_REBUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Rebuilds the initramfs for the boot layers just written; returns the note for the caller.
/// Through systemd when it runs the bus; here (in a blocking thread) when it does not (a test
/// bus, a system without systemd).
pub async fn regenerate_initramfs(conn: &zbus::Connection) -> String {
    let _one = ONE_REBUILD.lock().await;
    let tool = match persist::initramfs_tool() {
        Ok((tool, _)) => tool,
        Err(why) => return why,
    };
    match through_systemd(conn, names::INITRAMFS_UNIT, REBUILD_WAIT).await {
        Ok(Some(result)) if result == "done" => trf(
            "The initramfs was regenerated ({tool}, in {unit}).",
            &[("tool", tool), ("unit", names::INITRAMFS_UNIT)],
        ),
        Ok(Some(result)) => persist::initramfs_failed(
            tool,
            &trf(
                "{unit} ended with \"{result}\"; journalctl -u {unit} says why",
                &[("unit", names::INITRAMFS_UNIT), ("result", &result)],
            ),
        ),
        Ok(None) => trf(
            "The initramfs is still being regenerated ({unit} is running); journalctl -u {unit} shows when it ends.",
            &[("unit", names::INITRAMFS_UNIT)],
        ),
        Err(e) => {
            tracing::info!("regenerating the initramfs here: systemd did not start {}: {e}", names::INITRAMFS_UNIT);
            tokio::task::spawn_blocking(persist::regenerate_initramfs)
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .unwrap_or_else(|e| e)
        }
    }
}

/// Starts the unit and waits for its job's result (`None`: still running after the wait).
async fn through_systemd(
    conn: &zbus::Connection,
    unit: &str,
    wait: std::time::Duration,
) -> zbus::Result<Option<String>> {
    use futures_util::StreamExt;
    let manager = ManagerProxy::new(conn).await?;
    // Subscribed before the start: a fast job must not end unseen.
    let mut removed = manager.receive_job_removed().await?;
    match manager.subscribe().await {
        // Subscriptions are per connection; one left by an earlier call is as good.
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
        r => r?,
    }
    let job = manager.start_unit(unit, "replace").await;
    let job = match job {
        Ok(j) => j,
        Err(e) => {
            let _ = manager.unsubscribe().await;
            return Err(e);
        }
    };
    let job_end = async {
        while let Some(signal) = removed.next().await {
            if let Ok(args) = signal.args() {
                if args.job == job {
                    return Some(args.result);
                }
            }
        }
        None
    };
    let result = tokio::time::timeout(wait, job_end).await.ok().flatten();
    let _ = manager.unsubscribe().await;
    Ok(result)
}

/// One boot-line change at a time: the request and result files have one name each.
static ONE_BOOT_LINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Carries out a boot-line change: in passage-boot-line.service where systemd runs the bus and
/// this is the machine's own root, else here (a test bus, a system without systemd).
pub async fn boot_line(
    conn: &zbus::Connection,
    root: &Path,
    state: Arc<StateDir>,
    req: bootfix::Request,
) -> Result<bootfix::Done, HelperError> {
    let _one = ONE_BOOT_LINE.lock().await;
    let req_id = req.id.clone();
    if root == Path::new("/") {
        let path = state.path().join(bootfix::REQUEST);
        let result = state.path().join(bootfix::RESULT);
        let _ = std::fs::remove_file(&result);
        let bytes = serde_json::to_vec(&req).map_err(|e| HelperError::Failed(e.to_string()))?;
        passage_core::store::write_atomic(&path, &bytes)
            .map_err(|e| HelperError::Failed(format!("{}: {e}", path.display())))?;
        // Longer than the unit's own TimeoutStartSec=10min: its end is always seen.
        let wait = std::time::Duration::from_secs(11 * 60);
        match through_systemd(conn, names::BOOT_LINE_UNIT, wait).await {
            Ok(Some(_)) => {
                // Never left for a later start to find.
                let _ = std::fs::remove_file(&path);
                // The unit's own answer, whether it ended "done" or "failed".
                let stored = match std::fs::read(&result) {
                    Ok(s) => s,
                    Err(e) => {
                        // Killed before it answered (its timeout, say): started again with no
                        // request, it puts back whatever the cut-short change left.
                        let again = through_systemd(conn, names::BOOT_LINE_UNIT, wait).await;
                        return Err(HelperError::Failed(trf(
                            "{unit} left no result ({error}); it was started again to put the boot files back ({again}); journalctl -u {unit} says what happened",
                            &[
                                ("unit", names::BOOT_LINE_UNIT),
                                ("error", &e.to_string()),
                                ("again", &format!("{again:?}")),
                            ],
                        )));
                    }
                };
                let (id, r): (String, Result<bootfix::Done, String>) =
                    serde_json::from_slice(&stored)
                        .map_err(|e| HelperError::Failed(e.to_string()))?;
                if id != req_id {
                    return Err(HelperError::Failed(trf(
                        "{unit} answered another request; journalctl -u {unit} says what it did",
                        &[("unit", names::BOOT_LINE_UNIT)],
                    )));
                }
                return r.map_err(HelperError::Failed);
            }
            Ok(None) => {
                let _ = std::fs::remove_file(&path);
                return Err(HelperError::Failed(trf(
                    "{unit} is still running; journalctl -u {unit} shows when it ends, and passagectl doctor what it changed",
                    &[("unit", names::BOOT_LINE_UNIT)],
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                tracing::info!(
                    "changing the boot line here: systemd did not start {}: {e}",
                    names::BOOT_LINE_UNIT
                );
            }
        }
    }
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || bootfix::apply(&root, &state, &req))
        .await
        .map_err(|e| HelperError::Failed(e.to_string()))?
        .map_err(HelperError::Failed)
}
