//! Which IP addresses a fetch of a client-given URL may connect to: only publicly routable
//! ones, so a request cannot make the gateway reach its own host, its network or the cloud
//! metadata service. Addresses that embed an IPv4 address (mapped, NAT64, 6to4) are judged by
//! the address they lead to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public, in words for an error message; `None` for a public address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

/// IPv4 ranges that are not publicly routable (IANA special-purpose registry), most specific
/// first.
const V4: &[(u32, u8, &str)] = &[
    (0xFFFF_FFFF, 32, "broadcast"),
    (0x0000_0000, 8, "unspecified (\"this network\")"),
    (0x0A00_0000, 8, "private"),
    (0x6440_0000, 10, "shared (carrier-grade NAT)"),
    (0x7F00_0000, 8, "loopback"),
    (0xA9FE_0000, 16, "link-local (cloud metadata)"),
    (0xAC10_0000, 12, "private"),
    (0xC000_0000, 24, "reserved (IETF protocol assignments)"),
    (0xC000_0200, 24, "documentation"),
    (0xC058_6300, 24, "reserved (6to4 relay)"),
    (0xC0A8_0000, 16, "private"),
    (0xC612_0000, 15, "benchmarking"),
    (0xC633_6400, 24, "documentation"),
    (0xCB00_7100, 24, "documentation"),
    (0xE000_0000, 4, "multicast"),
    (0xF000_0000, 4, "reserved"),
];

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4.iter()
        .find(|(net, len, _)| bits >> (32 - len) == net >> (32 - len))
        .map(|(_, _, why)| *why)
}

/// IPv6 ranges that are not publicly routable, checked after the forms that embed IPv4.
const V6: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified"),
    (1, 128, "loopback"),
    (0x0064_ff9b_0001 << 80, 48, "reserved (local NAT64)"),
    (0x0100 << 112, 64, "reserved (discard)"),
    (0x2001_0000 << 96, 32, "reserved (Teredo)"),
    (0x2001_0002 << 96, 48, "benchmarking"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x3fff << 112, 20, "documentation"),
    (0xfc00 << 112, 7, "unique local (private)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"),
    (0xff00 << 112, 8, "multicast"),
];

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    if let Some(v4) = embedded_v4(bits) {
        return non_public_v4(v4);
    }
    if let Some((_, _, why)) = V6
        .iter()
        .find(|(net, len, _)| bits >> (128 - len) == net >> (128 - len))
    {
        return Some(why);
    }
    // Only 2000::/3 is allocated for global unicast; the rest is reserved (`::a.b.c.d`, the
    // deprecated IPv4-compatible form, among it).
    if bits >> 125 != 1 {
        return Some("reserved");
    }
    None
}

/// The IPv4 address behind an IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or
/// 6to4 (`2002:AABB:CCDD::/48`) address.
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    let low = Ipv4Addr::from(bits as u32);
    if bits >> 32 == 0xffff || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low);
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(s: &str) -> Option<&'static str> {
        non_public(s.parse().unwrap())
    }

    #[test]
    fn every_non_public_ipv4_range_is_refused_at_both_ends() {
        for (first, last, reason) in [
            ("0.0.0.0", "0.255.255.255", "unspecified"),
            ("10.0.0.0", "10.255.255.255", "private"),
            ("100.64.0.0", "100.127.255.255", "carrier-grade NAT"),
            ("127.0.0.0", "127.255.255.255", "loopback"),
            ("169.254.0.0", "169.254.255.255", "link-local"),
            ("172.16.0.0", "172.31.255.255", "private"),
            ("192.0.0.0", "192.0.0.255", "reserved"),
            ("192.0.2.0", "192.0.2.255", "documentation"),
            ("192.88.99.0", "192.88.99.255", "6to4 relay"),
            ("192.168.0.0", "192.168.255.255", "private"),
            ("198.18.0.0", "198.19.255.255", "benchmarking"),
            ("198.51.100.0", "198.51.100.255", "documentation"),
            ("203.0.113.0", "203.0.113.255", "documentation"),
            ("224.0.0.0", "239.255.255.255", "multicast"),
            ("240.0.0.0", "255.255.255.254", "reserved"),
            ("255.255.255.255", "255.255.255.255", "broadcast"),
        ] {
            for ip in [first, last] {
                let got = why(ip);
                assert!(
                    got.is_some_and(|w| w.contains(reason)),
                    "{ip}: {got:?}, want {reason}"
                );
            }
        }
        assert_eq!(why("169.254.169.254"), Some("link-local (cloud metadata)"));
    }

    #[test]
    fn public_ipv4_neighbours_of_the_ranges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_non_public_ipv6_range_is_refused() {
        for (ip, reason) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::2", "reserved"),
            ("::127.0.0.1", "reserved"),
            ("64:ff9b:1::1", "local NAT64"),
            ("100::1", "discard"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("fc00::1", "unique local"),
            ("fdff:ffff::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "reserved"),
            ("1::1", "reserved"),
        ] {
            let got = why(ip);
            assert!(
                got.is_some_and(|w| w.contains(reason)),
                "{ip}: {got:?}, want {reason}"
            );
        }
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2001:4860::1",
            "3ffe::1",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address() {
        for (ip, reason) in [
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:100.64.0.1", "carrier-grade NAT"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::ffff:255.255.255.255", "broadcast"),
            ("64:ff9b::192.168.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2002:c0a8:0101::", "private"),
        ] {
            let got = why(ip);
            assert!(
                got.is_some_and(|w| w.contains(reason)),
                "{ip}: {got:?}, want {reason}"
            );
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::1.1.1.1", "2002:0808:0808::1"] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }
}
