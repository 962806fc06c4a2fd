//! `pitcrew sim`: the simulated provider starts without a repository, says where it listens
//! and that it is a simulator, answers a chat completion, and stops on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::signal;

const WAIT: Duration = Duration::from_secs(20);

/// `pitcrew args…` in a scratch directory (no repository, no PITCREW_CONFIG).
fn pitcrew(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pitcrew"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("PITCREW_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
fn http(host: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

#[test]
fn sim_serves_a_completion_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.md"), "Hello from the script.").unwrap();
    std::fs::write(
        dir.path().join("sim.toml"),
        "[models.\"sim/demo\"]\nscript = [{ reply_file = \"hello.md\" }]\n",
    )
    .unwrap();
    let mut child = pitcrew(
        dir.path(),
        &["sim", "--bind", "127.0.0.1:0", "--config", "sim.toml"],
    )
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = received.recv_timeout(WAIT).expect("the listening line");
    assert!(line.contains("SIMULATED"), "{line}");
    assert!(line.contains("sim/demo"), "{line}");
    let host = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split("/v1").next())
        .expect("the address is printed")
        .to_string();
    assert!(host.starts_with("127.0.0.1:"), "{line}");

    let request = r#"{"model": "sim/demo", "messages": [{"role": "user", "content": "hi"}]}"#;
    let (status, head, body) = http(&host, "POST", "/v1/chat/completions", request);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("x-pitcrew-simulated: true"), "{head}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Hello from the script."
    );
    assert_eq!(reply["system_fingerprint"], "pitcrew-sim");

    signal(&child, Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sim_refuses_a_remote_address_and_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = pitcrew(dir.path(), &["sim", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");

    std::fs::write(dir.path().join("sim.toml"), "[models.m]\nrpm = 0\n").unwrap();
    let out = pitcrew(
        dir.path(),
        &["sim", "--bind", "127.0.0.1:0", "--config", "sim.toml"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sim.toml:2: field `models.m.rpm`"),
        "{stderr}"
    );
}
