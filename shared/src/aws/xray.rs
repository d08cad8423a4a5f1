//! AWS X-Ray subsegments, sent to the X-Ray daemon Lambda runs beside a function with
//! active tracing (`AWS_XRAY_DAEMON_ADDRESS`, UDP): each is a JSON segment document
//! after the daemon's one-line header, attached to the invocation's segment through
//! the `Parent` of the invocation's trace header (`Root=…;Parent=…;Sampled=1`). An
//! invocation that is not sampled, or a function without a daemon, sends nothing.
//!
//! Sending is fire-and-forget, as with every X-Ray SDK: a datagram the daemon misses
//! loses a subsegment, never a record.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use serde_json::{Value, json};

/// Where Lambda says its X-Ray daemon listens: `host:port`, or
/// `tcp:host:port udp:host:port`.
pub const DAEMON_ADDRESS_VAR: &str = "AWS_XRAY_DAEMON_ADDRESS";

/// The header every datagram to the daemon starts with.
const DAEMON_HEADER: &str = "{\"format\": \"json\", \"version\": 1}\n";

/// The largest datagram the daemon takes.
const MAX_DATAGRAM: usize = 64 * 1024;

/// An invocation's trace header (`X-Amzn-Trace-Id`, `Lambda-Runtime-Trace-Id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    /// `1-` eight hex digits `-` twenty-four hex digits.
    pub root: String,
    /// The segment this invocation's subsegments hang from: sixteen hex digits.
    pub parent: Option<String>,
    pub sampled: bool,
}

impl TraceHeader {
    /// Parses `Root=…;Parent=…;Sampled=…` (in any order, other keys ignored); `None`
    /// without a well-formed root.
    pub fn parse(header: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for field in header.split(';') {
            match field.trim().split_once('=') {
                Some(("Root", value)) if is_trace_id(value) => root = Some(value.to_owned()),
                Some(("Parent", value)) if is_hex(value, 16) => parent = Some(value.to_owned()),
                Some(("Sampled", value)) => sampled = value == "1",
                _ => {}
            }
        }
        Some(Self {
            root: root?,
            parent,
            sampled,
        })
    }

    /// Whether subsegments of this invocation are recorded: sampled, with a parent.
    pub fn records(&self) -> bool {
        self.sampled && self.parent.is_some()
    }
}

fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_trace_id(value: &str) -> bool {
    let mut parts = value.split('-');
    parts.next() == Some("1")
        && parts.next().is_some_and(|time| is_hex(time, 8))
        && parts.next().is_some_and(|unique| is_hex(unique, 24))
        && parts.next().is_none()
}

/// A random subsegment id: sixteen hex digits.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// One piece of work of an invocation, timed in seconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub name: String,
    pub start: f64,
    pub end: f64,
    /// The work failed on the remote side (a sink that failed): X-Ray's `fault`.
    pub fault: bool,
    /// Why, when it failed.
    pub cause: Option<String>,
    /// Indexed for filter expressions (`annotation.sink = "search"`).
    pub annotations: serde_json::Map<String, Value>,
}

/// The segment document of `span` as a subsegment of `trace`'s invocation; `None`
/// when `trace` is not recorded.
pub fn subsegment(trace: &TraceHeader, span: &Span) -> Option<Value> {
    if !trace.records() {
        return None;
    }
    let mut document = json!({
        "type": "subsegment",
        "name": span.name,
        "id": new_id(),
        "trace_id": trace.root,
        "parent_id": trace.parent,
        "start_time": span.start,
        "end_time": span.end.max(span.start),
        "namespace": "remote",
        "annotations": span.annotations,
    });
    if span.fault {
        document["fault"] = json!(true);
        if let Some(cause) = &span.cause {
            document["cause"] = json!({
                "exceptions": [{ "id": new_id(), "message": cause }],
            });
        }
    }
    Some(document)
}

/// The X-Ray daemon's UDP endpoint.
#[derive(Debug)]
pub struct Daemon {
    socket: UdpSocket,
    address: SocketAddr,
}

impl Daemon {
    /// The daemon [`DAEMON_ADDRESS_VAR`] names; `None` when it is unset (tracing is
    /// not active). A value that names no address is an error.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        match std::env::var(DAEMON_ADDRESS_VAR) {
            Ok(value) if !value.trim().is_empty() => Self::new(&value).map(Some),
            _ => Ok(None),
        }
    }

    /// The daemon at `address`: `host:port`, or `tcp:host:port udp:host:port`.
    pub fn new(address: &str) -> anyhow::Result<Self> {
        let udp = address
            .split_whitespace()
            .find_map(|part| part.strip_prefix("udp:"))
            .or_else(|| {
                let only = address.trim();
                (!only.contains(' ') && !only.starts_with("tcp:")).then_some(only)
            })
            .ok_or_else(|| {
                anyhow::anyhow!("{DAEMON_ADDRESS_VAR} has no UDP address: `{address}`")
            })?;
        let address = udp
            .to_socket_addrs()
            .ok()
            .and_then(|mut all| all.next())
            .ok_or_else(|| anyhow::anyhow!("{DAEMON_ADDRESS_VAR} is not a host:port: `{udp}`"))?;
        let local: SocketAddr = if address.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, address })
    }

    /// Sends one segment document; a document over the daemon's datagram limit is
    /// not sent.
    pub fn send(&self, document: &Value) -> std::io::Result<()> {
        let datagram = format!("{DAEMON_HEADER}{document}");
        if datagram.len() > MAX_DATAGRAM {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the segment document is over 64 KiB",
            ));
        }
        self.socket
            .send_to(datagram.as_bytes(), self.address)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

    #[test]
    fn trace_headers_are_read_in_any_order_and_only_when_well_formed() {
        let full =
            TraceHeader::parse(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1")).unwrap();
        assert_eq!(full.root, ROOT);
        assert_eq!(full.parent.as_deref(), Some("53995c3f42cd8ad8"));
        assert!(full.records());
        let reordered = TraceHeader::parse(&format!(
            "Sampled=1; Lineage=a:1 ;Parent=53995c3f42cd8ad8;Root={ROOT}"
        ))
        .unwrap();
        assert_eq!(reordered, full);
        let unsampled =
            TraceHeader::parse(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0")).unwrap();
        assert!(!unsampled.records());
        let orphan = TraceHeader::parse(&format!("Root={ROOT};Sampled=1")).unwrap();
        assert!(!orphan.records());
        for bad in [
            "",
            "Root=",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279z",
            "Root=1-5759e988-bd862e3fe1be46a994272793-00",
            "Parent=53995c3f42cd8ad8;Sampled=1",
        ] {
            assert_eq!(TraceHeader::parse(bad), None, "{bad}");
        }
        // A malformed parent is dropped, so nothing is attached to a segment that
        // does not exist.
        let bad_parent =
            TraceHeader::parse(&format!("Root={ROOT};Parent=53995c3f\"}};Sampled=1")).unwrap();
        assert!(!bad_parent.records());
    }

    fn span(fault: bool) -> Span {
        Span {
            name: "search".into(),
            start: 1_796_223_600.25,
            end: 1_796_223_600.5,
            fault,
            cause: fault.then(|| "search: the domain is unavailable".to_owned()),
            annotations: json!({"sink": "search", "deliveries": 3})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn a_subsegment_hangs_from_the_invocations_segment() {
        let trace =
            TraceHeader::parse(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1")).unwrap();
        let ok = subsegment(&trace, &span(false)).unwrap();
        assert_eq!(ok["type"], "subsegment");
        assert_eq!(ok["trace_id"], ROOT);
        assert_eq!(ok["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(ok["name"], "search");
        assert!(is_hex(ok["id"].as_str().unwrap(), 16));
        assert_eq!(ok["start_time"], 1_796_223_600.25);
        assert_eq!(ok["end_time"], 1_796_223_600.5);
        assert_eq!(ok["annotations"]["deliveries"], 3);
        assert!(ok.get("fault").is_none());
        let failed = subsegment(&trace, &span(true)).unwrap();
        assert_eq!(failed["fault"], true);
        assert_eq!(
            failed["cause"]["exceptions"][0]["message"],
            "search: the domain is unavailable"
        );
        let unsampled =
            TraceHeader::parse(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0")).unwrap();
        assert_eq!(subsegment(&unsampled, &span(false)), None);
    }

    #[test]
    fn documents_reach_the_daemon_after_its_header() {
        let daemon_side = UdpSocket::bind("127.0.0.1:0").unwrap();
        daemon_side
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = daemon_side.local_addr().unwrap().port();
        for address in [
            format!("127.0.0.1:{port}"),
            format!("tcp:127.0.0.1:2000 udp:127.0.0.1:{port}"),
        ] {
            let daemon = Daemon::new(&address).unwrap();
            daemon.send(&json!({"name": "search"})).unwrap();
            let mut buffer = [0u8; 1024];
            let n = daemon_side.recv(&mut buffer).unwrap();
            let text = std::str::from_utf8(&buffer[..n]).unwrap();
            let (header, body) = text.split_once('\n').unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(header).unwrap(),
                json!({"format": "json", "version": 1})
            );
            assert_eq!(
                serde_json::from_str::<Value>(body).unwrap()["name"],
                "search"
            );
        }
        let daemon = Daemon::new(&format!("127.0.0.1:{port}")).unwrap();
        let huge = json!({ "name": "x".repeat(MAX_DATAGRAM) });
        assert!(daemon.send(&huge).is_err());
        for bad in [
            "tcp:127.0.0.1:2000",
            "nowhere",
            "udp:",
            "127.0.0.1:notaport",
        ] {
            assert!(Daemon::new(bad).is_err(), "{bad}");
        }
    }
}
