//! What the transport benches share: the `BENCH` line format, free ports, the CPU model,
//! and registry processes (docker-registry, `ocikit serve`) on loopback, stopped on drop.
#![allow(dead_code)] // each bench uses a part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Prints `BENCH name median unit min max`; returns the median.
pub(crate) fn report(name: &str, unit: &str, values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "BENCH {name} {median:.3} {unit} {:.3} {:.3}",
        values[0],
        values[values.len() - 1]
    );
    median
}

pub(crate) fn ratio(name: &str, value: f64) {
    println!("BENCH {name} {value:.3} x {value:.3} {value:.3}");
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// User and system CPU seconds of process `pid` from `/proc/PID/stat`: its own, or with
/// `children` those of the children it has waited for. The kernel counts them in USER_HZ
/// ticks, 100 a second on Linux.
pub(crate) fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces), from the third (state) on.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    let (user, system) = if children { (13, 14) } else { (11, 12) };
    let ticks = |i: usize| fields[i].parse::<f64>().unwrap();
    (ticks(user) + ticks(system)) / 100.0
}

/// A registry process on a free loopback port.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
}

impl Server {
    /// Debian's `docker-registry` (Distribution 2.8) storing in `dir`.
    pub(crate) fn distribution(dir: &Path) -> Server {
        let port = free_port();
        let storage = dir.join("distribution");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.join("distribution.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt install docker-registry)");
        Server::ready(child, port)
    }

    /// `ocikit serve` (the `binary`) on `root`, with `extra` flags.
    pub(crate) fn ocikit(root: &Path, binary: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(binary)
            .args(["-q", "serve", "--log", "off", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(root)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the ocikit binary");
        Server::ready(child, port)
    }

    /// The process id, for reading its CPU time (`/proc/PID/stat`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `child`, once its port takes connections.
    pub(crate) fn ready(child: Child, port: u16) -> Server {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
