//! The interactive prompt, redis-cli style. Reads commands line by line from stdin (a prompt is shown only
//! on a terminal, so scripts can pipe commands in).

use std::io::{BufRead, IsTerminal, Write};

use crate::client::Client;
use crate::output::{print_value, print_values};

const HELP: &str = "commands:
  GET key                 value of key, or (nil)
  MGET key [key ...]      values, one per line
  EXISTS key [key ...]    how many of the keys exist
  INFO [JSON]             keyspace version, size, replication and cache statistics (JSON: the raw document)
  KEYSPACE [name]         show or switch the keyspace
  HELP                    this text
  QUIT                    leave";

pub async fn run(client: &Client, url: &str, mut keyspace: String) -> i32 {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("cairn {} connected to {url} — HELP for commands, QUIT to leave", env!("CARGO_PKG_VERSION"));
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut failures = 0;
    loop {
        if interactive {
            print!("{}[{keyspace}]> ", url.trim_start_matches("http://").trim_start_matches("https://"));
            let _ = std::io::stdout().flush();
        }
        let Some(Ok(line)) = lines.next() else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((cmd, args)) = words.split_first() else { continue };
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let result = match (cmd.to_ascii_uppercase().as_str(), args.len()) {
            ("QUIT" | "EXIT", _) => break,
            ("HELP", _) => {
                println!("{HELP}");
                Ok(())
            }
            ("KEYSPACE", 0) => {
                println!("{keyspace}");
                Ok(())
            }
            ("KEYSPACE", 1) => match cairn_shared::key::validate_keyspace(&args[0]) {
                Ok(()) => {
                    keyspace = args[0].clone();
                    println!("OK");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            ("GET", 1) => client.get(&keyspace, &args[0]).await.map(|v| print_value(v.as_deref())),
            ("MGET", n) if n > 0 => client.mget(&keyspace, &args).await.map(|v| print_values(&v)),
            ("EXISTS", n) if n > 0 => client
                .mget(&keyspace, &args)
                .await
                .map(|v| println!("(integer) {}", v.iter().filter(|x| x.is_some()).count())),
            ("INFO", 0) => client.info(&keyspace).await.map(|v| print!("{}", crate::info_report::render(&v))),
            ("INFO", 1) if args[0].eq_ignore_ascii_case("json") => client
                .info(&keyspace)
                .await
                .map(|v| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())),
            ("GET" | "MGET" | "EXISTS" | "INFO" | "KEYSPACE", _) => Err(format!("wrong number of arguments for {cmd}")),
            _ => Err(format!("unknown command {cmd:?}; HELP lists them")),
        };
        if let Err(e) = result {
            failures += 1;
            println!("(error) {e}");
        }
    }
    if failures > 0 && !interactive { 1 } else { 0 }
}
