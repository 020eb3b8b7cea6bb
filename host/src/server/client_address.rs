//! Who the client is, for throttles and login events: the socket peer, unless the peer is a
//! proxy the operator trusts (`SKIFF_TRUSTED_PROXIES`); then the right-most `X-Forwarded-For` hop
//! that is not a trusted proxy. Hops left of it were written by the client and prove nothing.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The client's address as far as the trusted proxies vouch for it.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    // Every X-Forwarded-For field, in order, as one comma-separated list; read right to left.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // What does not parse was not written by a proxy we trust: stop at the last one that was.
        let Some(address) = parse_hop(hop.trim()) else { return client };
        client = address;
        if !is_trusted(&address) {
            return address;
        }
    }
    client
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443` or
/// `203.0.113.7:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|socket| socket.ip()))
}

/// `SKIFF_TRUSTED_PROXIES` entries: CIDRs, or single addresses.
pub fn parse_trusted_proxy(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not a CIDR (10.0.0.0/8) or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_direct_client_cannot_choose_its_address() {
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(client_address(ip("203.0.113.7"), &headers, &[]), ip("203.0.113.7"));
        let trusted = [parse_trusted_proxy("10.0.0.0/8").unwrap()];
        assert_eq!(client_address(ip("203.0.113.7"), &headers, &trusted), ip("203.0.113.7"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = [parse_trusted_proxy("10.0.0.0/8").unwrap(), parse_trusted_proxy("192.168.1.1").unwrap()];
        // The client forged the first hop; the ingress appended what it saw.
        let headers = forwarded(&["1.2.3.4, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(client_address(ip("192.168.1.1"), &headers, &trusted), ip("203.0.113.7"));
        // No header: the proxy itself.
        assert_eq!(client_address(ip("10.0.0.5"), &HeaderMap::new(), &trusted), ip("10.0.0.5"));
        // Garbage stops the walk at the last trusted hop.
        let headers = forwarded(&["not-an-address, 10.9.9.9"]);
        assert_eq!(client_address(ip("10.0.0.5"), &headers, &trusted), ip("10.9.9.9"));
        // Ports and brackets, as some proxies write them.
        let headers = forwarded(&["[2001:db8::1]:443"]);
        assert_eq!(client_address(ip("10.0.0.5"), &headers, &trusted), ip("2001:db8::1"));
    }

    #[test]
    fn trusted_proxies_parse_as_cidrs_or_addresses() {
        assert!(parse_trusted_proxy("10.0.0.0/8").is_ok());
        assert_eq!(parse_trusted_proxy(" 127.0.0.1 ").unwrap().to_string(), "127.0.0.1/32");
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("ingress").is_err());
    }
}
