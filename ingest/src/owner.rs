//! Who owns a checkpoint, and whether that owner may still be running. An owner names its run (a token), its
//! process (host and boot, pid, and the process's start time: a pid alone is reused) and its lease (the last
//! heartbeat and how long it lasts).
//!
//! Gone, so the checkpoint may be taken over: a run of this process that ended (its future dropped); a
//! process of this host that no longer exists, or whose pid now names a process started at another time;
//! any owner whose lease ran out without a renewal.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    /// Unique per run.
    pub token: String,
    /// Host name, boot id and pid namespace: a pid means something only there.
    pub host: String,
    pub pid: u32,
    /// The process's start time (clock ticks after boot, `/proc/<pid>/stat`): tells a reused pid apart.
    /// None in owners written before it existed, or where it cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    pub heartbeat_at: String,
    pub lease_ms: u64,
}

/// Runs of this process that are still going (tokens): a checkpoint owned by this process but by no live
/// run belongs to one whose future was dropped.
static LIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// Keeps a run's token live while its job exists; dropped (a crash, a cancelled request), its checkpoint
/// can be taken over at once by another run of this process.
#[derive(Debug)]
pub struct LiveRun {
    pub token: String,
}

impl LiveRun {
    pub fn start() -> LiveRun {
        let token = cairn_shared::format::layout::new_version();
        LIVE.lock().expect("live runs").insert(token.clone());
        LiveRun { token }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        LIVE.lock().expect("live runs").remove(&self.token);
    }
}

/// Host name, boot id and pid namespace: where a pid means one process. Containers sharing a host name
/// (host networking) have their own pid namespace, so they judge each other by the lease, not by pid.
pub fn this_host() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|l| l.display().to_string()).unwrap_or_default();
    format!("{}/{}/{pid_ns}", read("/proc/sys/kernel/hostname"), read("/proc/sys/kernel/random/boot_id"))
}

/// When process `pid` started, in clock ticks after boot (field 22 of `/proc/<pid>/stat`); None if it does
/// not exist or cannot be read.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from after its closing one.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Owner {
    /// This process, for run `token`, with a heartbeat now.
    pub fn me(token: &str, lease: Duration) -> Owner {
        let pid = std::process::id();
        Owner {
            token: token.to_string(),
            host: this_host(),
            pid,
            started: start_time(pid),
            heartbeat_at: rfc3339(SystemTime::now()),
            lease_ms: lease.as_millis() as u64,
        }
    }

    fn lease_end(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.heartbeat_at).ok().map(|t| t + Duration::from_millis(self.lease_ms))
    }

    /// Why this owner may still be running (None: it is gone, its checkpoint may be taken over).
    pub fn alive(&self, now: SystemTime) -> Option<String> {
        let lease = self.lease_end().filter(|end| *end > now);
        if self.host == this_host() {
            let me = std::process::id();
            // A start time that cannot be read (another user's process under hidepid) tells nothing: the
            // lease decides then.
            let same_process = |pid: u32| match (self.started, start_time(pid)) {
                (Some(recorded), Some(now)) => recorded == now,
                _ => true,
            };
            if self.pid == me && same_process(me) {
                let live = LIVE.lock().expect("live runs").contains(&self.token);
                return live.then(|| "another run in this process holds it".to_string());
            }
            // Gone at once when its process is, or its pid now names a process started at another time;
            // else while its lease runs (a process that stopped renewing it is stuck or stopped).
            if !process_exists(self.pid) || !same_process(self.pid) {
                return None;
            }
            return lease.map(|end| {
                format!(
                    "process {} on this host holds it; its lease ends in {:.0?} unless renewed",
                    self.pid,
                    end.duration_since(now).unwrap_or_default()
                )
            });
        }
        lease.map(|end| {
            format!(
                "pid {} on host {} holds it; its lease ends in {:.0?} unless renewed",
                self.pid,
                self.host.split('/').next().unwrap_or("?"),
                end.duration_since(now).unwrap_or_default()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(pid: u32, started: Option<u64>, age: Duration, lease: Duration) -> Owner {
        Owner {
            token: "t".into(),
            host: this_host(),
            pid,
            started,
            heartbeat_at: rfc3339(SystemTime::now() - age),
            lease_ms: lease.as_millis() as u64,
        }
    }

    #[test]
    fn a_live_process_holds_only_while_its_lease_runs_and_only_if_it_is_the_same_process() {
        let parent = std::os::unix::process::parent_id();
        let started = start_time(parent);
        assert!(started.is_some(), "/proc/<pid>/stat is readable here");
        let lease = Duration::from_secs(30);
        let now = SystemTime::now();
        assert!(owner(parent, started, Duration::ZERO, lease).alive(now).is_some());
        assert!(owner(parent, None, Duration::ZERO, lease).alive(now).is_some(), "an older build's owner");
        assert!(owner(parent, started, Duration::from_secs(60), lease).alive(now).is_none(), "lease ran out");
        assert!(owner(parent, started.map(|s| s + 1), Duration::ZERO, lease).alive(now).is_none(), "pid reused");
        assert!(owner(u32::MAX - 1, None, Duration::ZERO, lease).alive(now).is_none(), "no such process");
    }

    #[test]
    fn a_run_of_this_process_holds_while_it_lives() {
        let run = LiveRun::start();
        let mut o = Owner::me(&run.token, Duration::from_secs(30));
        assert!(o.alive(SystemTime::now()).is_some());
        o.token = "ended".into();
        assert!(o.alive(SystemTime::now()).is_none());
    }
}
