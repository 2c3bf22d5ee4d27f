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

/// Starts `cairn serve <args>` in `cwd` on a free port with extra `env`, and waits for "serving on".
pub fn serve(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> Served {
    let mut child = Command::new(cairn_bin())
        .arg("serve")
        .args(args)
        .env("CAIRN_PORT", "0")
        .env_remove("CAIRN_STORE")
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
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push_str(&line);
            log.push('\n');
            if let Some(rest) = line.strip_prefix("serving on ") {
                let url = rest.split_whitespace().next().unwrap().to_string();
                return Served { child, url, log };
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cairn serve did not start:\n{log}");
}

/// Runs `cairn <args>` with `stdin` piped in and extra `env`.
pub fn cairn(args: &[&str], stdin: Option<&str>, env: &[(&str, String)]) -> Output {
    let mut child = Command::new(cairn_bin())
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
