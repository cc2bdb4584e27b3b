//! A long-running SQLite connection in a child process (Debian's python3 loading the
//! extension), driven line by line: for tests where a database must stay open (leases, two
//! writers, restore-on-open) while the test looks at the replica.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use crate::procs::python_command;

/// How long one statement may take before the test gives up on the child.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

const DRIVER: &str = r#"
import json
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
boot.close()
conns = [sqlite3.connect(ARGS[0], uri=True, isolation_level=None, timeout=30) for _ in range(int(ARGS[1]))]
print(json.dumps(["ready", len(conns)]), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["kind"] == "script":
            conns[0].executescript(cmd["sql"])
            rows = []
        else:
            rows = conns[0].execute(cmd["sql"]).fetchall()
        print(json.dumps(["ok", rows]), flush=True)
    except Exception as e:
        print(json.dumps(["err", str(e)]), flush=True)
"#;

/// JSON string literal of `s`.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One child process holding `connections` open connections to a URI.
pub struct Session {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl Session {
    /// Starts python, loads the extension, opens `uri` (`connections` times, all at once) and
    /// waits until it is ready. stderr (the extension's log) goes to `stderr`.
    #[track_caller]
    pub fn open(uri: &str, connections: usize, env: &[(&str, &Path)], stderr: &Path) -> Session {
        Self::open_wrapped(&[], uri, connections, env, stderr)
    }

    /// [`Session::open`] with python started through `wrapper` (a command and its arguments
    /// that runs the rest of its command line, such as `unshare --pid --fork`).
    #[track_caller]
    pub fn open_wrapped(
        wrapper: &[&str],
        uri: &str,
        connections: usize,
        env: &[(&str, &Path)],
        stderr: &Path,
    ) -> Session {
        let n = connections.to_string();
        let python = python_command(DRIVER, &[uri, &n], env);
        let mut cmd = match wrapper.split_first() {
            None => python,
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args)
                    .arg(python.get_program())
                    .args(python.get_args());
                for (k, v) in python.get_envs() {
                    match v {
                        Some(v) => c.env(k, v),
                        None => c.env_remove(k),
                    };
                }
                c
            }
        };
        let mut child = cmd
            .env("LOG_LEVEL", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).expect("create stderr file"))
            .spawn()
            .expect("start the python session");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Session {
            child: Some(child),
            stdin,
            lines: rx,
            stderr: stderr.to_path_buf(),
        };
        let ready = s.reply();
        assert!(
            ready.starts_with("[\"ready\""),
            "session did not start: {ready}\n{}",
            s.log()
        );
        s
    }

    /// The child's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    #[track_caller]
    fn reply(&mut self) -> String {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(l) => l,
            Err(e) => panic!(
                "the python session did not answer ({e:?}); log:\n{}",
                self.log()
            ),
        }
    }

    #[track_caller]
    fn send(&mut self, kind: &str, sql: &str) -> String {
        let line = format!("{{\"kind\": \"{kind}\", \"sql\": {}}}\n", json_str(sql));
        let stdin = self.stdin.as_mut().expect("session is open");
        stdin
            .write_all(line.as_bytes())
            .expect("write to the session");
        stdin.flush().expect("flush the session");
        self.reply()
    }

    /// Runs a script (several statements); panics on an SQL error.
    #[track_caller]
    pub fn exec(&mut self, sql: &str) {
        let r = self.send("script", sql);
        assert!(r.starts_with("[\"ok\""), "{sql}: {r}\nlog:\n{}", self.log());
    }

    /// Runs one query returning a single integer.
    #[track_caller]
    pub fn query_i64(&mut self, sql: &str) -> i64 {
        let r = self.send("query", sql);
        let num: String = r
            .trim_start_matches("[\"ok\", [[")
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        num.parse()
            .unwrap_or_else(|_| panic!("{sql}: not an integer reply: {r}\nlog:\n{}", self.log()))
    }

    /// Closes stdin and waits for a normal exit (the extension flushes at exit); returns the log.
    #[track_caller]
    pub fn close(mut self) -> String {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("session is open");
        let status = child.wait().expect("wait for the session");
        let log = self.log();
        assert!(
            status.success(),
            "session exited with {status}; log:\n{log}"
        );
        log
    }

    /// SIGKILLs the child and returns the log.
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("session running").id()
    }

    pub fn kill(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.log()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_str;

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(json_str("\u{1}"), "\"\\u0001\"");
    }
}
