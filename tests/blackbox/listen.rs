//! Listening like an exporter: dual-stack `:port`, several addresses,
//! systemd socket activation, `-h`, and start-up errors that name what is
//! wrong and exit with the documented code.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

async fn health(url: &str) -> u16 {
    client()
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn any_host_port_answers_on_ipv4_and_ipv6() {
    let sim = sim(&[]);
    // `:0`: every interface, one dual-stack socket.
    let exp = Proc::start(
        EXPORTER,
        &["--web.listen-address", ":0", "--pool.url", &sim.url("/")],
        &[],
    );
    let port = exp.address.rsplit(':').next().unwrap().to_owned();
    assert!(exp.address.starts_with("[::]:"), "{}", exp.address);
    assert_eq!(
        health(&format!("http://127.0.0.1:{port}/health")).await,
        200
    );
    if ipv6_loopback() {
        assert_eq!(health(&format!("http://[::1]:{port}/health")).await, 200);
    }
}

#[tokio::test]
async fn repeated_listen_addresses_all_answer() {
    let sim = sim(&[]);
    let (a, b) = (closed_port(), closed_port());
    let first = format!("127.0.0.1:{a}");
    let second = if ipv6_loopback() {
        format!("[::1]:{b}")
    } else {
        format!("127.0.0.1:{b}")
    };
    let exp = Proc::start(
        EXPORTER,
        &[
            "--web.listen-address",
            &first,
            "--web.listen-address",
            &second,
            "--pool.url",
            &sim.url("/"),
        ],
        &[],
    );
    for addr in [&first, &second] {
        let body = get_text(&format!("http://{addr}/metrics")).await;
        assert!(body.contains("secure_channel_up 1"), "{addr}: {body}");
    }
    assert_eq!(exp.logs().matches("msg=listening").count(), 2);
}

#[tokio::test]
async fn systemd_socket_activation_serves_the_passed_socket() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let sim = sim(&[]);
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let fd = socket.as_raw_fd();
    // As systemd does: the socket as descriptor 3, LISTEN_FDS=1, and
    // LISTEN_PID naming the process itself (the shell's pid, kept by exec).
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ exec \"$0\" \"$@\"",
        EXPORTER,
        "--web.systemd-socket",
        "--pool.url",
        &sim.url("/"),
    ])
    .env("LISTEN_FDS", "1")
    .env_remove("SECURE_CHANNEL_POOL_URL")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it only rearranges descriptors of
    // the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec set: when the socket
            // already is descriptor 3, clear the flag instead.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // From here only the exporter holds the listening socket.
    drop(socket);
    install_crypto_provider();
    let quick = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut body = String::new();
    // Until it answers (a busy machine may take a while to start it).
    for _ in 0..300 {
        if let Ok(resp) = quick.get(&url).send().await {
            body = resp.text().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        body.contains("secure_channel_up 1"),
        "{body}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Socket activation with nothing at descriptor 3 (a unit whose socket is
/// missing): the process's own first descriptor (its event loop) may get
/// number 3, and the exporter must refuse it as not a socket without
/// closing it (closing it aborted the process: "IO Safety violation").
#[test]
fn systemd_activation_without_a_socket_is_a_clear_error() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ exec \"$0\" \"$@\"",
        EXPORTER,
        "--web.systemd-socket",
        "--pool.url",
        "http://127.0.0.1:1/",
    ])
    .env("LISTEN_FDS", "1")
    .env_remove("SECURE_CHANNEL_POOL_URL")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: close is async-signal-safe; it only changes the child's
    // descriptors between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(3);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--web.systemd-socket: descriptor 3:"),
        "{stderr}"
    );
    assert!(!stderr.contains("fatal runtime error"), "{stderr}");
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(EXPORTER);
    cmd.args(args)
        .env_remove("SECURE_CHANNEL_POOL_URL")
        .env_remove("SECURE_CHANNEL_POOL_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn short_help_and_dotted_names_in_argh_errors() {
    let (code, stdout, _) = run(&["-h"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--web.listen-address"), "{stdout}");
    assert!(stdout.contains("--web.systemd-socket"), "{stdout}");
    let (code, _, stderr) = run(&["--web.listen-address"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--web.listen-address"), "{stderr}");
    assert!(!stderr.contains("--web-listen-address"), "{stderr}");
}

#[test]
fn start_up_errors_are_one_line_with_the_documented_code() {
    let broken = temp_file(
        "broken-web.yml",
        "tls_server_config:\n  cert_file: /nonexistent\n",
    );
    let (code, _, stderr) = run(&["--web.config.file", broken.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--web.config.file"), "{stderr}");

    let (code, _, stderr) = run(&[], &[("SECURE_CHANNEL_POOL_URL", "::nope")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("SECURE_CHANNEL_POOL_URL"), "{stderr}");

    let (code, _, stderr) = run(&["--web.systemd-socket"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("LISTEN_PID"), "{stderr}");

    let (code, _, stderr) = run(&["--web.systemd-socket", "--web.listen-address", ":1"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--web.listen-address"), "{stderr}");
}
