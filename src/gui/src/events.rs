//! Device events for the app: the kernel's (udev/uevent monitor) and, in test builds, lines
//! injected through the probe's FIFO. Both end in the same call, so a test drives the path a
//! real event takes.

use passage_core::watch::{Action, DeviceEvent, Monitor};
use std::path::Path;

/// Hands every kernel device event to `deliver` until it returns false (the app is gone) or
/// the monitor cannot be opened or read (then live updates stop; the list stays as read).
pub fn follow_kernel(mut deliver: impl FnMut(DeviceEvent) -> bool) {
    let Ok(mon) = Monitor::open() else {
        return;
    };
    while let Ok(events) = mon.wait(None) {
        for ev in events {
            if !deliver(ev) {
                return;
            }
        }
    }
}

/// Hands every event line of a FIFO ("ACTION ADDRESS") to `deliver` until it returns false or
/// the writer closes it; lines that are no event are skipped.
pub fn follow_fifo(path: &Path, mut deliver: impl FnMut(DeviceEvent) -> bool) {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        if let Some(ev) = parse_event(&line) {
            if !deliver(ev) {
                return;
            }
        }
    }
}

/// "bind 0000:0b:00.0" → a device event (the probe's injection format).
pub fn parse_event(line: &str) -> Option<DeviceEvent> {
    let (action, addr) = line.trim().split_once(' ')?;
    let action = match action {
        "add" => Action::Add,
        "remove" => Action::Remove,
        "bind" => Action::Bind,
        "unbind" => Action::Unbind,
        "change" => Action::Change,
        _ => return None,
    };
    Some(DeviceEvent {
        action,
        address: addr.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_an_action_and_an_address() {
        let ev = parse_event("bind 0000:0b:00.0\n").expect("an event");
        assert!(matches!(ev.action, Action::Bind));
        assert_eq!(ev.address.to_string(), "0000:0b:00.0");
        assert!(parse_event("change 0000:00:14.0").is_some());
        assert!(parse_event("frob 0000:0b:00.0").is_none());
        assert!(parse_event("bind nowhere").is_none());
        assert!(parse_event("").is_none());
    }
}
