//! The one thing the helper asks systemd for: starting passage-initramfs.service and waiting
//! for its end. The initramfs is rebuilt there, under a unit that may write /boot, because
//! the helper's own unit keeps /boot read-only.

use crate::persist;
use passage_core::i18n::trf;
use passage_core::names;
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
    match through_systemd(conn).await {
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
async fn through_systemd(conn: &zbus::Connection) -> zbus::Result<Option<String>> {
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
    let job = manager.start_unit(names::INITRAMFS_UNIT, "replace").await;
    let job = match job {
        Ok(j) => j,
        Err(e) => {
            let _ = manager.unsubscribe().await;
            return Err(e);
        }
    };
    let wait = async {
        while let Some(signal) = removed.next().await {
            if let Ok(args) = signal.args() {
                if args.job == job {
                    return Some(args.result);
                }
            }
        }
        None
    };
    let result = tokio::time::timeout(REBUILD_WAIT, wait)
        .await
        .ok()
        .flatten();
    let _ = manager.unsubscribe().await;
    Ok(result)
}
