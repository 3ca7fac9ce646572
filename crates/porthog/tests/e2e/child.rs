//! Spawning helper processes with captured output: deadlines instead of sleeps, and output kept
//! for the failure message. Owns nothing about namespaces or porthog's contract.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running child whose stdout and stderr are read by background threads.
pub struct Spawned {
    pub child: Child,
    /// The command line, for messages.
    pub what: String,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a child ended.
pub struct Finished {
    pub what: String,
    /// None when a signal killed it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Everything a failure message needs to show.
    pub fn context(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.code.map_or_else(|| "killed by a signal".to_string(), |c| c.to_string()),
            truncate(&self.stdout, 6000),
            truncate(&self.stderr, 3000),
        )
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... ({} more bytes)", &s[..end], s.len() - end)
}

/// Spawns `cmd` with stdout and stderr piped (the caller chooses stdin).
pub fn spawn(cmd: &mut Command) -> Spawned {
    let what = describe(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let (tx, lines) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out_pipe = child.stdout.take().expect("stdout is piped");
    let err_pipe = child.stderr.take().expect("stderr is piped");
    let out_buf = Arc::clone(&stdout);
    let err_buf = Arc::clone(&stderr);
    let readers = vec![
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = out_buf.lock().unwrap_or_else(|p| p.into_inner());
                all.push_str(&line);
                all.push('\n');
                drop(all);
                // Nobody listening any more is fine: the text is kept in `out_buf`.
                let _ = tx.send(line);
            }
        }),
        std::thread::spawn(move || {
            let mut pipe = err_pipe;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut all = err_buf.lock().unwrap_or_else(|p| p.into_inner());
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }),
    ];
    Spawned { child, what, lines, stdout, stderr, readers }
}

/// The command line as a shell would show it.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Spawned {
    /// The first stdout line, waiting at most `timeout`. Err says why there is none.
    pub fn first_line(&mut self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("no line on stdout within {timeout:?}; stderr: {}", self.stderr()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("stdout closed without a line ({status}); stderr: {}", self.stderr()))
            }
        }
    }

    /// Waits until stderr contains `needle` (the child says it is ready), at most `timeout`.
    /// Err when the child exits first or the time runs out.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exited ({status}) before saying {needle:?}; stderr: {}",
                    self.stderr()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "did not say {needle:?} within {timeout:?}; stderr: {}",
                    self.stderr()
                ));
            }
            // Polling a deadline for the child's own signal, not ordering threads.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until stdout contains `needle`, at most `timeout`. Err when the child exits first
    /// or the time runs out.
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout.lock().unwrap_or_else(|p| p.into_inner()).contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}) before printing {needle:?}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("did not print {needle:?} within {timeout:?}"));
            }
            // Polling a deadline for the child's own output, not ordering threads.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for the child to exit, killing it (and failing the test) after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    // Polling a deadline, not ordering anything: the child decides when it ends.
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "`{}` did not finish within {timeout:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        self.what,
                        self.stdout.lock().unwrap_or_else(|p| p.into_inner()),
                        self.stderr()
                    );
                }
                Err(e) => panic!("waiting for `{}`: {e}", self.what),
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = self.stdout.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Finished { what: self.what.clone(), code: status.code(), stdout, stderr: self.stderr() }
    }
}
