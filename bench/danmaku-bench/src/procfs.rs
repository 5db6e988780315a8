//! CPU time and resident memory of a process, and which process holds a TCP socket, from
//! `/proc` (Linux). It imports nothing of the crate.

use std::net::SocketAddrV4;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time (user + system) a process has used so far.
pub(crate) fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), starting at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

/// Resident set size in bytes.
pub(crate) fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The whole machine's CPU time so far as (busy, total) clock ticks, from `/proc/stat`: busy
/// includes interrupt and softirq time (the kernel's loopback TCP work, charged to no process
/// when `ksoftirqd` does it).
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The fraction of the machine's CPU that was busy between two [`machine_ticks`] readings.
pub(crate) fn busy_between(from: (u64, u64), to: (u64, u64)) -> Option<f64> {
    let total = to.1.checked_sub(from.1)?;
    (total > 0).then(|| to.0.saturating_sub(from.0) as f64 / total as f64)
}

/// Online CPUs of this machine.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Which of `pids` holds the IPv4 TCP socket from `local` to `remote`: its inode from
/// `/proc/net/tcp`, then the process whose `/proc/<pid>/fd` links to it. A relay tells who
/// opened a connection it accepted by the peer's end (`local` = the connection's peer address).
pub(crate) fn tcp_owner(local: SocketAddrV4, remote: SocketAddrV4, pids: &[u32]) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp_inode(&table, local, remote)?;
    let link = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()))
    })
}

/// The inode of the socket from `local` to `remote` in a `/proc/net/tcp` table (addresses as
/// the kernel prints them: the IPv4 address as a native-endian hex word, the port big-endian).
fn tcp_inode(table: &str, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
    let hex = |a: SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (local, remote) = (hex(local), hex(remote));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let start = cpu_time("self").expect("cpu time");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(cpu_time("self").expect("cpu time") >= start);
        assert!(rss_bytes("self").expect("rss") > 1024 * 1024);
        assert!(cpu_time("999999999").is_none());
        let a = machine_ticks().expect("/proc/stat");
        let b = machine_ticks().expect("/proc/stat");
        assert!(b.1 >= a.1 && a.0 <= a.1);
        assert!(busy_between((0, 100), (50, 200)) == Some(0.5));
    }

    #[test]
    fn finds_the_process_that_holds_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let (std::net::SocketAddr::V4(peer), std::net::SocketAddr::V4(at)) =
            (peer, listener.local_addr().unwrap())
        else {
            panic!("IPv4 expected");
        };
        let me = std::process::id();
        assert_eq!(tcp_owner(peer, at, &[1, me]), Some(me));
        assert_eq!(tcp_owner(at, peer, &[1]), None);
        drop(client);
    }
}
