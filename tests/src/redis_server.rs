//! A redis-server on a free loopback port that a test starts and stops (the shared cache tier's tests).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// redis-server on a free loopback port, persistence off. scripts/test.sh installs it.
    pub fn start() -> Redis {
        Redis::start_with(|port| vec!["--port".into(), port.to_string()])
    }

    /// redis-server with the arguments `args(port)` gives (the port it listens on), plus loopback only and
    /// persistence off.
    pub fn start_with(args: impl Fn(u16) -> Vec<String>) -> Redis {
        // The free port is picked by binding and letting go of it: another test may take it meanwhile, and
        // redis-server then exits at once. Another port is tried then.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("redis-server")
                .args(args(port))
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server; scripts/test.sh installs it)");
            for _ in 0..400 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Ours, unless it exits right after (another listener answered before it gave up).
                    std::thread::sleep(Duration::from_millis(50));
                    if child.try_wait().unwrap().is_none() {
                        return Redis { child, port };
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start listening");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Redis {
    /// Runs one command on a connection of its own and returns its reply: the first line of a simple,
    /// integer or error reply, or a bulk string's content.
    pub fn command(&self, args: &[&[u8]]) -> String {
        use std::io::{BufRead, Read, Write};
        let mut body = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            body.extend(format!("${}\r\n", a.len()).as_bytes());
            body.extend(*a);
            body.extend(b"\r\n");
        }
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.write_all(&body).unwrap();
        let mut reader = std::io::BufReader::new(tcp);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_string();
        match line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => {
                let mut bulk = vec![0u8; n];
                reader.read_exact(&mut bulk).unwrap();
                String::from_utf8_lossy(&bulk).into_owned()
            }
            None => line,
        }
    }
}
