//! The ready-line protocol every subcommand follows: set up, print ONE JSON line
//! ({"ready":true,"pid":..,...} or {"ready":false,"error":..}), then hold the sockets until stdin
//! reaches EOF. SIGTERM keeps its default action (exit), which closes them just the same.

use std::io::{self, Read, Write};

use clap::Parser;
use serde_json::{Value, json};

use crate::bind::{bind, listen_at};
use crate::cli::{Cli, Command};
use crate::connect::connect;
use crate::serve::serve;
use crate::socket::{Hold, raise_nofile};
use crate::udp::udp;

pub fn main() {
    let cli = Cli::parse();
    let result = raise_nofile().and_then(|()| run(cli.command));
    match result {
        Ok((report, hold)) => {
            let mut line = json!({"ready": true, "pid": std::process::id()});
            if let (Value::Object(line), Value::Object(report)) = (&mut line, report) {
                line.extend(report);
            }
            print_line(&line);
            hold_until_stdin_eof();
            // The held sockets close when the process exits.
            drop(hold);
        }
        Err(error) => {
            eprintln!("porthog-loadgen: {error}");
            print_line(&json!({"ready": false, "pid": std::process::id(), "error": error}));
            std::process::exit(1);
        }
    }
}

fn run(command: Command) -> Result<(Value, Hold), String> {
    match command {
        Command::Serve { listen, never_close } => serve(&listen, never_close),
        Command::Connect { to, count, until_fail: _, close, bind_first, rate, device } => {
            connect(&to, count, close, bind_first, rate, device.as_deref())
        }
        Command::Bind { addr, count, until_fail: _ } => bind(addr, count),
        Command::ListenAt { addr } => listen_at(addr),
        Command::Udp { to, count, until_fail: _, v6only } => udp(to, count, v6only),
    }
}

fn print_line(value: &Value) {
    let mut out = io::stdout().lock();
    // A parent that stopped reading is not our problem: it will close stdin too.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn hold_until_stdin_eof() {
    let mut buf = [0u8; 512];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
