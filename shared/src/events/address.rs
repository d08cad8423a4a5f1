//! Which addresses a webhook may be delivered to: a public unicast address, and no
//! other unless the operator allows private targets (`DOCFAN_ALLOW_PRIVATE_TARGETS=1`).
//!
//! A rules file is written by an operator, but the names in it resolve through DNS,
//! which someone else may control: without this check a target could reach the
//! machine's own services (loopback), the local network, or a cloud metadata endpoint
//! (link-local `169.254.169.254`). The delivery worker resolves a name first, checks
//! every address with [`non_public_kind`], and connects only to the addresses it
//! checked, so a name that resolves differently the next time (DNS rebinding) gains
//! nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The environment variable that lets targets resolve to private addresses.
pub const ALLOW_PRIVATE_TARGETS_ENV: &str = "DOCFAN_ALLOW_PRIVATE_TARGETS";

/// Why an address is not a public one, or `None` when it is.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "unspecified (0.0.0.0/8)",
        (127, _) => "loopback",
        (10, _) | (172, 16..=31) | (192, 168) => "private",
        (169, 254) => "link-local",
        (100, 64..=127) => "shared address space (CGNAT, 100.64.0.0/10)",
        (192, 0) if c == 0 => "IETF protocol assignments (192.0.0.0/24)",
        (198, 18..=19) => "benchmarking (198.18.0.0/15)",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // An IPv4 address carried in IPv6 (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96) reaches
    // that IPv4 address: judge it as one.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return v4_kind(Ipv4Addr::new(a, b, c, d));
    }
    Some(match segments[0] {
        s if s & 0xff00 == 0xff00 => "multicast",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        _ if segments[..6] == [0; 6] => "IPv4-compatible (deprecated)",
        _ => return None,
    })
}

/// A target refused because one of its addresses is not public.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RefusedAddress {
    /// The host as the URL names it.
    pub host: String,
    /// The address that is not public.
    pub address: IpAddr,
    /// What kind of address it is (`loopback`, `private`, `link-local`, …).
    pub kind: &'static str,
}

impl fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.trim_matches(['[', ']']) == self.address.to_string() {
            write!(f, "the target {} is a {} address", self.host, self.kind)?;
        } else {
            write!(
                f,
                "the target {} resolves to {}, a {} address",
                self.host, self.address, self.kind
            )?;
        }
        write!(
            f,
            "; private, loopback and link-local targets are refused unless \
             {ALLOW_PRIVATE_TARGETS_ENV}=1"
        )
    }
}

/// Checks every address `host` resolved to: the first that is not public refuses it.
pub fn check_addresses(
    host: &str,
    addresses: impl IntoIterator<Item = IpAddr>,
) -> Result<(), RefusedAddress> {
    for address in addresses {
        if let Some(kind) = non_public_kind(address) {
            return Err(RefusedAddress {
                host: host.to_owned(),
                address,
                kind,
            });
        }
    }
    Ok(())
}

/// Whether the value of [`ALLOW_PRIVATE_TARGETS_ENV`] allows private targets: `1` or
/// `true` (any case); anything else, or nothing, does not.
pub fn allows_private(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<&'static str> {
        non_public_kind(text.parse().unwrap())
    }

    #[test]
    fn every_non_public_range_is_named() {
        for (address, expected) in [
            ("0.0.0.0", "unspecified (0.0.0.0/8)"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared address space (CGNAT, 100.64.0.0/10)"),
            (
                "100.127.255.255",
                "shared address space (CGNAT, 100.64.0.0/10)",
            ),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved or broadcast (240.0.0.0/4)"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique local (fc00::/7)"),
            ("fd12:3456::1", "unique local (fc00::/7)"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a00:1", "private"),
            ("::7f00:1", "IPv4-compatible (deprecated)"),
        ] {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass_including_the_neighbours_of_private_ranges() {
        for address in [
            "93.184.216.34",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.1",
            "169.253.0.1",
            "223.255.255.255",
            "2606:2800:220:1:248:1893:25c8:1946",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(address), None, "{address}");
        }
    }

    #[test]
    fn one_private_address_among_public_ones_refuses_the_host() {
        let addresses = ["8.8.8.8", "10.0.0.7"].map(|a| a.parse().unwrap());
        let refused = check_addresses("hooks.example", addresses).unwrap_err();
        assert_eq!(refused.address, "10.0.0.7".parse::<IpAddr>().unwrap());
        let said = refused.to_string();
        assert!(
            said.contains("hooks.example resolves to 10.0.0.7, a private address"),
            "{said}"
        );
        assert!(said.contains("DOCFAN_ALLOW_PRIVATE_TARGETS=1"), "{said}");
        let literal = check_addresses("127.0.0.1", ["127.0.0.1".parse().unwrap()]).unwrap_err();
        assert!(
            literal
                .to_string()
                .starts_with("the target 127.0.0.1 is a loopback address"),
            "{literal}"
        );
        assert!(check_addresses("x", ["8.8.4.4".parse().unwrap()]).is_ok());
    }

    #[test]
    fn only_1_or_true_allows_private_targets() {
        assert!(allows_private(Some("1")));
        assert!(allows_private(Some("TRUE")));
        for refused in [None, Some(""), Some("0"), Some("yes"), Some("false")] {
            assert!(!allows_private(refused), "{refused:?}");
        }
    }
}
