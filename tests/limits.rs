//! Input limits: every file runbook reads is a capped read of a regular file,
//! through the binary, for every kind of file and every way it can be wrong.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::run::text;

/// How long a child may take before the test kills it and fails. Not a
/// speed check: a refused file is refused at once and the 50,000-step runs
/// take seconds, but on a loaded machine they can take minutes; this only
/// guards against a hang.
const HANG_GUARD: Duration = Duration::from_secs(600);

/// Runs `cmd` to completion, killing it (and failing) if it hangs. Its
/// output is read as it comes, so a child writing a lot never blocks.
pub(crate) fn bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the runbook binary runs");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let (status, hung) = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            break (status, false);
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            break (child.wait().expect("the killed child"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: stdout.join().expect("stdout was read"),
        stderr: stderr.join().expect("stderr was read"),
    };
    assert!(!hung, "runbook hung: {:?}\n{}", cmd.get_args(), text(&out));
    out
}

/// `runbook ARGS` in the package dir, with no credentials, and `HOME` and
/// the state dir in `home`.
fn runbook(args: &[&str], home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("HOME", home)
        .env("RUNBOOK_STATE_DIR", home.join("state"))
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("ALIBABA_CLOUD_PROFILE")
        .env_remove("RUST_LOG");
    cmd
}

/// What stands at a file's path instead of a readable file.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// A symlink to `/dev/zero` (endless zeros).
    DevZero,
    /// A FIFO nobody writes to (opening it would wait forever).
    Fifo,
    /// A directory.
    Directory,
    /// A (sparse) regular file one byte over the cap.
    OverCap,
}

impl Bad {
    const ALL: [Bad; 4] = [Bad::DevZero, Bad::Fifo, Bad::Directory, Bad::OverCap];

    fn make(self, path: &Path, cap: u64) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        match self {
            Bad::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            Bad::Fifo => {
                let status = Command::new("mkfifo").arg(path).status().unwrap();
                assert!(status.success(), "mkfifo {}", path.display());
            }
            Bad::Directory => std::fs::create_dir(path).unwrap(),
            Bad::OverCap => std::fs::File::create(path)
                .unwrap()
                .set_len(cap + 1)
                .unwrap(),
        }
    }

    /// The words the error must say about the file.
    fn words(self, cap: u64) -> String {
        match self {
            Bad::DevZero => "is a character device, not a regular file".to_owned(),
            Bad::Fifo => "is a FIFO, not a regular file".to_owned(),
            Bad::Directory => "is a directory, not a regular file".to_owned(),
            Bad::OverCap => format!(
                "is larger than the {} limit",
                runbook::limits::format_bytes(cap)
            ),
        }
    }
}

/// One kind of file runbook reads: where it goes, its cap, the command that
/// reads it and the exit code of the refusal.
struct Kind {
    name: &'static str,
    /// The file's path relative to the test's temp dir (`HOME`).
    file: &'static str,
    cap: u64,
    args: fn(&str) -> Vec<String>,
    exit: i32,
    /// Text around a value nested 100,000 lists deep, in the file's format.
    nest: (&'static str, &'static str),
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

const KINDS: &[Kind] = &[
    Kind {
        name: "playbook (validate)",
        file: "pb.yaml",
        cap: runbook::limits::PLAYBOOK_BYTES,
        args: |f| strings(&["validate", f]),
        exit: 3,
        nest: ("name: deep\nsteps: ", "\n"),
    },
    Kind {
        name: "playbook (plan)",
        file: "pb.yaml",
        cap: runbook::limits::PLAYBOOK_BYTES,
        args: |f| strings(&["plan", f]),
        exit: 3,
        nest: ("name: deep\nsteps: ", "\n"),
    },
    Kind {
        name: "playbook (graph)",
        file: "pb.yaml",
        cap: runbook::limits::PLAYBOOK_BYTES,
        args: |f| strings(&["graph", f]),
        exit: 3,
        nest: ("name: deep\nsteps: ", "\n"),
    },
    Kind {
        name: "params",
        file: "params.yaml",
        cap: runbook::limits::PARAMS_BYTES,
        args: |f| strings(&["plan", "playbooks/stop-di-job.yaml", "--params", f]),
        exit: 2,
        nest: ("di_job_id: ", "\n"),
    },
    Kind {
        name: "plan",
        file: "plan.json",
        cap: runbook::limits::PLAN_BYTES,
        args: |f| strings(&["run", f, "--sim"]),
        exit: 3,
        nest: ("{\"format\": 1, \"steps\": ", "}"),
    },
    Kind {
        name: "fixtures",
        file: "fixtures.yaml",
        cap: runbook::limits::FIXTURES_BYTES,
        args: |f| {
            strings(&[
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--access-key-id",
                "k",
                "--access-key-secret",
                "s",
                "--fixtures",
                f,
            ])
        },
        exit: 2,
        nest: ("dts_jobs: ", "\n"),
    },
    Kind {
        name: "aliyun config",
        file: ".aliyun/config.json",
        cap: runbook::limits::CONFIG_BYTES,
        args: |_| {
            strings(&[
                "plan",
                "playbooks/stop-di-job.yaml",
                "-p",
                "di_job_id=1",
                "--refresh",
            ])
        },
        exit: 4,
        nest: ("{\"profiles\": ", "}"),
    },
];

#[test]
fn every_file_read_is_a_capped_read_of_a_regular_file() {
    for kind in KINDS {
        for bad in Bad::ALL {
            let home = tempfile::tempdir().unwrap();
            let path = home.path().join(kind.file);
            bad.make(&path, kind.cap);
            let shown = path.to_string_lossy().into_owned();
            let out = bounded(runbook(
                &(kind.args)(&shown)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                home.path(),
            ));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = format!("{} as {bad:?}: {}", kind.name, text(&out));
            assert_eq!(out.status.code(), Some(kind.exit), "{why}");
            assert!(stderr.contains(&shown), "names the file: {why}");
            assert!(stderr.contains(&bad.words(kind.cap)), "says why: {why}");
            assert!(!stderr.contains("panicked"), "{why}");
        }
    }
}

#[test]
fn deep_nesting_in_any_file_is_an_error_not_a_crash() {
    const DEPTH: usize = 100_000;
    for kind in KINDS {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(kind.file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (before, after) = kind.nest;
        let content = format!("{before}{}{}{after}", "[".repeat(DEPTH), "]".repeat(DEPTH));
        std::fs::write(&path, content).unwrap();
        let shown = path.to_string_lossy().into_owned();
        let args = (kind.args)(&shown);
        let out = bounded(runbook(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            home.path(),
        ));
        let why = format!("{}: {}", kind.name, text(&out));
        assert_eq!(out.status.code(), Some(kind.exit), "{why}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(kind.file.rsplit('/').next().unwrap()),
            "names the file: {why}"
        );
    }
}

#[test]
fn validate_refuses_dev_zero_itself() {
    let home = tempfile::tempdir().unwrap();
    let out = bounded(runbook(&["validate", "/dev/zero"], home.path()));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("playbook `/dev/zero` is a character device, not a regular file"),
        "{}",
        text(&out)
    );
}

/// What a [`Hose`] saw of one endless answer.
#[derive(Clone, Copy, Debug)]
struct Streamed {
    /// Whether the client hung up before the server's bound.
    hung_up: bool,
}

/// A loopback server for `playbooks/stop-di-job.yaml`: `GetDIJob` answers
/// `Running` until a `StopDIJob` came, then `Stopped`; `StopDIJob` answers
/// 200 with a JSON body that never ends, streamed until the client hangs up
/// (or, bounded, the cap plus 16 MiB). With `declared`, the answer says its
/// length up front (5 GB); without, it is delimited by closing.
struct Hose {
    addr: std::net::SocketAddr,
    streamed: std::sync::Arc<std::sync::Mutex<Vec<Streamed>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepter: Option<std::thread::JoinHandle<()>>,
}

impl Hose {
    const BOUND: u64 = runbook::limits::RESPONSE_BYTES + 16 * 1024 * 1024;

    fn start(declared: bool) -> Hose {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let streamed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let accepter = {
            let (streamed, stop) = (Arc::clone(&streamed), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            let (streamed, stopped) = (Arc::clone(&streamed), Arc::clone(&stopped));
                            conns.push(std::thread::spawn(move || {
                                serve(conn, declared, &streamed, &stopped);
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        Hose {
            addr,
            streamed,
            stop,
            accepter: Some(accepter),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn streamed(&self) -> Vec<Streamed> {
        self.streamed.lock().unwrap().clone()
    }
}

impl Drop for Hose {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(a) = self.accepter.take() {
            let _ = a.join();
        }
    }
}

/// Serves the requests of one connection (see [`Hose`]).
fn serve(
    mut conn: std::net::TcpStream,
    declared: bool,
    streamed: &std::sync::Mutex<Vec<Streamed>>,
    stopped: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // One request: the head, then a body of its Content-Length.
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let first_line = head.lines().next().unwrap_or_default().to_owned();
        // The action is in the query with signature V1, in a header with V3
        // (the suite runs with both).
        let v3_stop = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("x-acs-action") && v.trim() == "StopDIJob"
            })
        });
        if first_line.contains("Action=StopDIJob") || v3_stop {
            stopped.store(true, Ordering::SeqCst);
            let length = if declared {
                "Content-Length: 5000000000\r\n"
            } else {
                "Connection: close\r\n"
            };
            let mut sent = 0u64;
            let mut hung_up = conn
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n{{\"RequestId\":\"r\",\"Pad\":\""
                    )
                    .as_bytes(),
                )
                .is_err();
            let pad = vec![b'a'; 64 * 1024];
            while !hung_up && sent < Hose::BOUND {
                match conn.write_all(&pad) {
                    Ok(()) => sent += pad.len() as u64,
                    Err(_) => hung_up = true,
                }
            }
            streamed.lock().unwrap().push(Streamed { hung_up });
            return;
        }
        let status = if stopped.load(Ordering::SeqCst) {
            "Stopped"
        } else {
            "Running"
        };
        let body = format!(
            "{{\"RequestId\":\"r\",\"Data\":{{\"DIJobId\":1,\"JobStatus\":\"{status}\"}}}}"
        );
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// An answer larger than the cap is not read past it: the client hangs up,
/// the call counts as an unknown outcome (it was sent and answered), and the
/// status call settles it.
#[test]
fn an_endless_answer_is_cut_off_at_the_cap_and_settled_by_its_status_call() {
    for declared in [false, true] {
        let hose = Hose::start(declared);
        let home = tempfile::tempdir().unwrap();
        let mut cmd = runbook(
            &[
                "run",
                "playbooks/stop-di-job.yaml",
                "-p",
                "di_job_id=1",
                "--yes",
                "--endpoint",
                &format!("dataworks={}", hose.url()),
            ],
            home.path(),
        );
        // STS is nowhere (a closed port): the run goes on without knowing
        // who it is, and the hose sees only the call under test.
        cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIlimits")
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "limits-secret")
            .env("RUNBOOK_STS_ENDPOINT", "http://127.0.0.1:9");
        let out = bounded(cmd);
        let why = format!("declared length: {declared}: {}", text(&out));
        assert_eq!(out.status.code(), Some(0), "{why}");
        let streamed = hose.streamed();
        assert_eq!(streamed.len(), 1, "one StopDIJob: {streamed:?} {why}");
        assert!(streamed[0].hung_up, "the client hung up: {streamed:?}");
        let runs = bounded(runbook(&["runs", "--json"], home.path()));
        let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
        let run_id = runs[0]["id"].as_str().unwrap();
        let show = bounded(runbook(&["show", run_id, "--attempts"], home.path()));
        let shown = String::from_utf8_lossy(&show.stdout);
        assert!(
            shown.contains("Transport.AnswerTooLarge")
                && shown.contains("larger than the 4 MiB limit on API answers"),
            "{}",
            text(&show)
        );
    }
}

/// A playbook of `n` sleep steps `s0 .. s{n-1}`, each needing the one
/// before; with `closed`, `s0` needs the last, closing a loop.
pub(crate) fn chain_playbook(n: usize, closed: bool) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("name: chain\nsteps:\n");
    for i in 0..n {
        let needs = match (i, closed) {
            (0, false) => String::new(),
            (0, true) => format!("s{}", n - 1),
            _ => format!("s{}", i - 1),
        };
        let _ = write!(text, "  - id: s{i}\n    needs: [{needs}]\n    sleep: 1s\n");
    }
    text
}

/// Steps in the long chain and loop below: past where a recursive walk
/// overflowed the stack (20,000 steps), small enough for a debug build.
const LONG: usize = 50_000;

#[test]
fn a_long_chain_and_loop_are_checked_planned_and_drawn_without_recursion() {
    let home = tempfile::tempdir().unwrap();
    let chain = home.path().join("chain.yaml");
    let cycle = home.path().join("cycle.yaml");
    std::fs::write(&chain, chain_playbook(LONG, false)).unwrap();
    std::fs::write(&cycle, chain_playbook(LONG, true)).unwrap();
    let (chain, cycle) = (
        chain.to_string_lossy().into_owned(),
        cycle.to_string_lossy().into_owned(),
    );
    // The loop from s0: s0 needs the last step, which needs the one before...
    let message = format!(
        "error: dependency cycle: s0 -> s{} -> s{} -> s{} -> s{} -> s{} -> ... {} more steps ... \
         -> s4 -> s3 -> s2 -> s1 -> s0 ({LONG} steps)",
        LONG - 1,
        LONG - 2,
        LONG - 3,
        LONG - 4,
        LONG - 5,
        LONG - 10,
    );
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["validate", &chain], 0),
        (vec!["validate", &cycle], 3),
        (vec!["plan", &chain], 0),
        (vec!["plan", &cycle], 3),
        (vec!["graph", &chain], 0),
        (vec!["graph", &cycle, "--format", "mermaid"], 3),
    ];
    // The six runs are independent: run them side by side.
    let outs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(args, _)| scope.spawn(|| bounded(runbook(args, home.path()))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((args, exit), out) in cases.iter().zip(&outs) {
        let why = format!("{args:?}: {}", text(out));
        assert_eq!(out.status.code(), Some(*exit), "{why}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if *exit == 3 {
            assert!(stderr.starts_with(&message), "{why}");
        } else {
            assert!(!out.stdout.is_empty(), "{why}");
        }
    }
    // The plan of the chain lists every step, in order.
    let plan = String::from_utf8_lossy(&outs[2].stdout);
    let at = |id: &str| plan.find(&format!(" {id} ")).unwrap_or(usize::MAX);
    assert!(
        at("s0") < at("s1") && at("s1") < at(&format!("s{}", LONG - 1)),
        "{plan:.2000}"
    );
}

/// `runbook sim` as a child process on a free loopback port; killed when
/// dropped.
struct SimProcess {
    child: std::process::Child,
    url: String,
    addr: std::net::SocketAddr,
}

const SIM_ID: &str = "LTAIlimitsSim";
const SIM_SECRET: &str = "limits-sim-secret";

impl SimProcess {
    fn start(flags: &[&str]) -> SimProcess {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args([
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--auto-create",
                "--delay",
                "0s",
            ])
            .args(flags)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", SIM_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SIM_SECRET)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("runbook sim starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("runbook sim prints its URL");
        let url = line.trim().to_owned();
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|_| panic!("runbook sim printed `{url}`"));
        SimProcess { child, url, addr }
    }

    /// `runbook run playbooks/stop-di-job.yaml` against it: real HTTP, real
    /// signatures, a read, a stop and a wait.
    fn stop_a_job(&self, home: &Path) -> Output {
        let mut cmd = runbook(
            &[
                "run",
                "playbooks/stop-di-job.yaml",
                "-p",
                "di_job_id=7",
                "--yes",
                "--endpoint",
                &format!("dataworks={}", self.url),
            ],
            home,
        );
        cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", SIM_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SIM_SECRET);
        bounded(cmd)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the server has closed `conn` (end of stream or reset), waiting up
/// to `patience` for it.
fn closed_by_server(conn: &mut std::net::TcpStream, patience: Duration) -> bool {
    use std::io::Read as _;
    conn.set_read_timeout(Some(patience)).unwrap();
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// 2,000 connections that never finish a request against a simulator
/// capped at 512: it holds at most 512 of them open, and a real run still
/// gets through. The timeouts are long, so the cap alone does it.
#[test]
fn a_capped_simulator_serves_a_real_run_past_2000_half_open_connections() {
    const CAP: usize = 512;
    const HALF_OPEN: usize = 2_000;
    let sim = SimProcess::start(&[
        "--max-connections",
        &CAP.to_string(),
        "--header-timeout",
        "1h",
        "--idle-timeout",
        "1h",
    ]);
    let mut conns: Vec<std::net::TcpStream> = (0..HALF_OPEN)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(sim.addr).expect("loopback connects");
            if i % 2 == 1 {
                // Half of them start a request and never finish its head.
                use std::io::Write as _;
                let _ = c.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            }
            c
        })
        .collect();

    let home = tempfile::tempdir().unwrap();
    let out = sim.stop_a_job(home.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Every connection past the cap was closed to make room; the newest
    // stay open. (Each check waits a little for the server's close to
    // arrive; an open connection costs the full wait, so only the newest
    // are waited on.)
    let mut open = 0;
    for (i, c) in conns.iter_mut().enumerate() {
        let patience = if i < HALF_OPEN - CAP {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(1)
        };
        if !closed_by_server(c, patience) {
            open += 1;
        }
    }
    assert!(open <= CAP, "{open} connections of {HALF_OPEN} held open");
}

/// A connection that sends nothing, one that stops in the middle of a
/// request head, and one that trickles a head byte by byte are all closed
/// by the simulator's timeouts; a real run still works.
#[test]
fn the_simulator_closes_idle_and_trickling_connections() {
    use std::io::Write as _;
    let sim = SimProcess::start(&["--header-timeout", "300ms", "--idle-timeout", "300ms"]);
    let mut silent = std::net::TcpStream::connect(sim.addr).unwrap();
    let mut partial = std::net::TcpStream::connect(sim.addr).unwrap();
    partial
        .write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut trickle = std::net::TcpStream::connect(sim.addr).unwrap();
    // One header byte every 50 ms keeps it busy but never finishes the
    // head: the header timeout, not the idle one, must end it.
    let header = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut sent = 0usize;
    let trickled_until_closed = loop {
        let byte = header.get(sent).copied().unwrap_or(b'a');
        if trickle.write_all(&[byte]).is_err() {
            break true;
        }
        sent += 1;
        if closed_by_server(&mut trickle, Duration::from_millis(50)) {
            break true;
        }
        if sent > 1_200 {
            // A minute of trickling: the header timeout never fired.
            break false;
        }
    };
    assert!(trickled_until_closed, "a trickled header was never cut off");
    assert!(closed_by_server(&mut silent, Duration::from_secs(30)));
    assert!(closed_by_server(&mut partial, Duration::from_secs(30)));

    let home = tempfile::tempdir().unwrap();
    let out = sim.stop_a_job(home.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
