//! Freezing a server instead of crashing it: SIGSTOP to the postmaster and every one of its
//! processes (what a stalled machine or a long pause looks like from outside), SIGCONT to
//! resume. The guard resumes it when dropped, so a failing test leaves no frozen server.

use crate::Pg;

/// A frozen server; dropping it resumes the server.
pub struct Frozen {
    pids: Vec<String>,
}

/// Stops every process of `pg` with SIGSTOP.
pub fn freeze(pg: &Pg) -> Frozen {
    let pid_file = std::fs::read_to_string(pg.data_dir.join("postmaster.pid"))
        .expect("postmaster.pid of a running server");
    let postmaster = pid_file.lines().next().expect("pid line").trim().to_owned();
    let mut pids = vec![postmaster.clone()];
    signal("-STOP", &pids);
    // A child forked just before the postmaster stopped (a new session's backend) would go
    // on answering: stop children until no new one appears.
    for _ in 0..10 {
        let children = std::process::Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .expect("pgrep runs");
        let new: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .filter(|p| !pids.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in &new {
            signal_child("-STOP", pid);
        }
        pids.extend(new);
    }
    Frozen { pids }
}

impl Frozen {
    /// Resumes the server now.
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.pids);
    }
}

/// Signals each of `pids`; the first (the postmaster) must get it, a child may have ended
/// between listing and signalling (a backend that finished its session).
fn signal(which: &str, pids: &[String]) {
    for (i, pid) in pids.iter().enumerate() {
        if i == 0 {
            let status = std::process::Command::new("kill")
                .arg(which)
                .arg(pid)
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {which} {pid} (the postmaster)");
        } else {
            signal_child(which, pid);
        }
    }
}

/// Signals a child that may have ended meanwhile.
fn signal_child(which: &str, pid: &str) {
    let _ = std::process::Command::new("kill")
        .arg(which)
        .arg(pid)
        .stderr(std::process::Stdio::null())
        .status();
}
