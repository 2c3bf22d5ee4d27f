//! Running the `cairn` binary: a server that is killed when dropped, and one-shot commands.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cairn_bin;

pub struct Served {
    child: Child,
    pub url: String,
    pub log: String,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited, waiting at most `within` (None: still running).
    pub fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `cairn` command that inherits none of this process's `CAIRN_*` settings: a developer's exported
/// `CAIRN_LOG_FORMAT` or `CAIRN_DATA_CACHE` must not change what a test checks. Tests pass what they mean.
pub fn cairn_command() -> Command {
    let mut cmd = Command::new(cairn_bin());
    without_cairn_env(&mut cmd);
    cmd
}

/// Removes from `cmd`'s environment every `CAIRN_*` variable this process has (see [`cairn_command`]).
pub fn without_cairn_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("CAIRN_")) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Starts `cairn serve <args>` in `cwd` on a free port with extra `env`, and waits for "serving on".
pub fn serve(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> Served {
    let mut child = cairn_command()
        .arg("serve")
        .args(args)
        .env("CAIRN_PORT", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(cwd)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if let Some(rest) = line.strip_prefix("serving on ") {
                    let url = rest.split_whitespace().next().unwrap().to_string();
                    return Served { child, url, log };
                }
            }
            // Its stderr closed: it exited without serving.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cairn serve did not start:\n{log}");
}

/// Runs `cairn <args>` with `stdin` piped in and extra `env`.
pub fn cairn(args: &[&str], stdin: Option<&str>, env: &[(&str, String)]) -> Output {
    let mut child = cairn_command()
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    child.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run again as a child of itself with `CAIRN_*` settings in its environment: the commands it makes for
    /// `cairn` must carry none of them.
    #[test]
    fn a_callers_cairn_settings_do_not_reach_the_commands_tests_run() {
        const NAME: &str = "process::tests::a_callers_cairn_settings_do_not_reach_the_commands_tests_run";
        if std::env::var_os("CAIRN_PROBE_CHILD").is_some() {
            let out = without_cairn_env(&mut Command::new("env")).output().unwrap();
            let leaked: Vec<String> =
                text(&out.stdout).lines().filter(|l| l.starts_with("CAIRN_")).map(str::to_string).collect();
            assert!(leaked.is_empty(), "reached the command: {leaked:?}");
            return;
        }
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads", "1"])
            .env("CAIRN_PROBE_CHILD", "1")
            .env("CAIRN_LOG_FORMAT", "json")
            .output()
            .unwrap();
        let shown = format!("{}{}", text(&child.stdout), text(&child.stderr));
        assert!(child.status.success() && shown.contains("1 passed"), "{shown}");
    }
}
