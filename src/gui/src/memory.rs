//! The process's memory: giving back what the loading threads freed, and the resident size
//! the debug log reports beside its timings.

/// The loading threads freed most of what they allocated (every file read, every verdict's
/// scratch), but glibc keeps freed memory in each thread's arena: hand it back to the system.
pub fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident memory now, in KiB (for the debug log's figures); 0 when it cannot be read.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_rss(&s))
        .unwrap_or(0)
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in KiB.
fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_size_is_read_from_the_status_text() {
        assert_eq!(
            vm_rss("Name:\tpassage\nVmRSS:\t  123456 kB\n"),
            Some(123456)
        );
        assert_eq!(vm_rss("Name:\tpassage\n"), None);
        assert!(rss_kib() > 0);
    }
}
