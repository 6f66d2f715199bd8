//! Small measuring helpers shared by the bench, the soak and the fault / hardening tests:
//! one reading of `/proc/<pid>/status` and one percentile definition, so every report
//! measures memory and latency the same way.

/// A `/proc/<pid>/status` value: kB for `VmRSS` / `VmHWM`, a count for `Threads`. `None`
/// when the process is gone or the field is missing (Linux only).
pub fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Nearest-rank percentile of an ascending slice (`q` in 0..=1); NaN when it is empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), 5.0);
        assert_eq!(percentile(&v, 0.9), 9.0);
        assert_eq!(percentile(&v, 0.99), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 10.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn proc_status_reads_this_process() {
        let me = std::process::id();
        assert!(proc_status(me, "VmRSS").is_some_and(|kb| kb > 0));
        assert!(proc_status(me, "Threads").is_some_and(|n| n >= 1));
        assert_eq!(proc_status(me, "NoSuchField"), None);
    }
}
