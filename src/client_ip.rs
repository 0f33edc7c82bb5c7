//! The client's address behind trusted proxies (`trusted_proxies`).
//!
//! A request's client address is its socket peer's, unless the peer is one of the configured
//! trusted proxies: then the proxy headers are read, `Forwarded` (RFC 7239, its `for=`
//! parameters) if present, else `X-Forwarded-For`. The chain is walked from the right (the
//! hop nearest to us) past every trusted proxy; the first address that is not trusted is the
//! client's. If every address is trusted, the left-most is. A header that cannot be read
//! completely (an element that is not an address, such as `unknown`, an obfuscated node, or
//! a `Forwarded` element without `for=`) is not trusted at all: the peer's address is used.
//! A peer that is not trusted never has its headers read, so a client cannot name its own
//! address by sending them.

use std::net::IpAddr;

pub use crate::domain::bound_tokens::IpBlock;

/// How the request layer decides a client's address: `trusted_proxies` when any are
/// configured, else Mattermost's `trusted_proxy_ip_header`, else the peer.
#[derive(Debug, Clone, Default)]
pub struct ClientIpSettings {
    /// `trusted_proxy_ip_header` (read only while `trusted_proxies` is empty).
    pub trusted_proxy_ip_header: Vec<String>,
    /// `trusted_proxies`.
    pub trusted_proxies: std::sync::Arc<TrustedProxies>,
}

impl ClientIpSettings {
    /// The settings of `config` (already validated).
    pub fn of(config: &crate::config::Config) -> Result<Self, String> {
        Ok(Self {
            trusted_proxy_ip_header: config.trusted_proxy_ip_header.clone(),
            trusted_proxies: std::sync::Arc::new(
                TrustedProxies::parse(&config.trusted_proxies)
                    .map_err(|e| format!("trusted_proxies: {e}"))?,
            ),
        })
    }
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<IpBlock>,
}

impl TrustedProxies {
    /// Parses `trusted_proxies` (addresses and CIDR blocks).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        list.iter()
            .map(|s| IpBlock::parse(s.as_ref()))
            .collect::<Result<_, _>>()
            .map(|blocks| Self { blocks })
    }

    /// None configured (the legacy `trusted_proxy_ip_header` applies).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|b| b.contains(ip))
    }

    /// The client's address for a request from `peer` with these headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let chain = if headers.contains_key(http::header::FORWARDED) {
            joined(headers, http::header::FORWARDED.as_str()).and_then(|v| forwarded_for(&v))
        } else if headers.contains_key(X_FORWARDED_FOR) {
            joined(headers, X_FORWARDED_FOR).and_then(|v| x_forwarded_for(&v))
        } else {
            return peer;
        };
        match chain {
            Some(chain) => self.pick(&chain).unwrap_or(peer),
            None => peer,
        }
    }

    /// The right-most address that is not a trusted proxy, else the left-most.
    fn pick(&self, chain: &[IpAddr]) -> Option<IpAddr> {
        chain
            .iter()
            .rev()
            .find(|ip| !self.contains(**ip))
            .or_else(|| chain.first())
            .copied()
    }
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Every value of header `name`, joined with commas (repeated headers are one list); `None`
/// if a value is not visible ASCII.
fn joined(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut all = String::new();
    for value in headers.get_all(name) {
        if !all.is_empty() {
            all.push(',');
        }
        all.push_str(value.to_str().ok()?);
    }
    Some(all)
}

/// The addresses of an `X-Forwarded-For` list, left to right; `None` if an entry is not an
/// address (IPv4 may carry a port, IPv6 may be bracketed with a port).
pub fn x_forwarded_for(value: &str) -> Option<Vec<IpAddr>> {
    value.split(',').map(|e| node_address(e.trim())).collect()
}

/// The `for=` addresses of a `Forwarded` header, left to right; `None` if an element has
/// no `for=`, or its node is not an address (`unknown`, an obfuscated `_name`), or the
/// header is malformed.
pub fn forwarded_for(value: &str) -> Option<Vec<IpAddr>> {
    split_outside_quotes(value, ',')?
        .into_iter()
        .map(|element| {
            let mut found = None;
            for pair in split_outside_quotes(element, ';')? {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (key, value) = pair.split_once('=')?;
                if key.trim().eq_ignore_ascii_case("for") {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(node_address(&unquote(value.trim())?)?);
                }
            }
            found
        })
        .collect()
}

/// Splits at `sep` where it is not inside a quoted string; `None` if a quote is left open.
fn split_outside_quotes(text: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// A token or a quoted string (RFC 7230), unescaped.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A node's address: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:8080`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port)) {
            return None;
        }
        return addr
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (addr, p) = node.rsplit_once(':')?;
    if !port(p) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an obfuscated port (`_abc`, RFC 7239 section 6.3).
fn port(text: &str) -> bool {
    text.parse::<u16>().is_ok()
        || (text.starts_with('_')
            && text.len() > 1
            && text[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn blocks_parse_and_match() {
        let p = proxies(&[
            "10.0.0.0/8",
            "192.168.1.7",
            "2001:db8::/32",
            "::ffff:172.16.0.1",
        ]);
        assert!(p.contains(ip("10.200.0.1")));
        assert!(p.contains(ip("::ffff:10.0.0.1")), "mapped IPv4 is IPv4");
        assert!(p.contains(ip("192.168.1.7")));
        assert!(!p.contains(ip("192.168.1.8")));
        assert!(p.contains(ip("2001:db8:ffff::1")));
        assert!(!p.contains(ip("2001:db9::1")));
        assert!(p.contains(ip("172.16.0.1")));
        assert!(proxies(&["0.0.0.0/0"]).contains(ip("8.8.8.8")));
        assert!(!proxies(&["0.0.0.0/0"]).contains(ip("::2")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0",
            "host.example",
            "10.0.0.0/-1",
            "",
        ] {
            let err = TrustedProxies::parse(&[bad]).unwrap_err();
            assert!(
                err.contains("not an IP address or CIDR block"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers_say() {
        let p = proxies(&["10.0.0.0/8"]);
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(p.client_ip(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_past_trusted_proxies() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 10.0.0.5")]);
        // 2.2.2.2 is the first hop we do not trust: 1.1.1.1 is whatever it claimed.
        assert_eq!(p.client_ip(peer, &h), ip("2.2.2.2"));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.5")]);
        assert_eq!(p.client_ip(peer, &all_trusted), ip("10.9.9.9"));
        // Repeated headers are one list, in order.
        let repeated = headers(&[
            ("x-forwarded-for", "3.3.3.3"),
            ("x-forwarded-for", "10.0.0.6"),
        ]);
        assert_eq!(p.client_ip(peer, &repeated), ip("3.3.3.3"));
        let ports = headers(&[("x-forwarded-for", "[2001:db8::9]:443, 4.4.4.4:80")]);
        assert_eq!(p.client_ip(peer, &ports), ip("4.4.4.4"));
        assert_eq!(
            p.client_ip(peer, &headers(&[])),
            peer,
            "no header: the peer"
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_is_parsed_per_rfc_7239() {
        let p = proxies(&["10.0.0.0/8", "2001:db8:aa::/48"]);
        let peer = ip("10.0.0.1");
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                r#"for=192.0.2.43;proto=https, For="[2001:db8:cafe::17]:4711";by=10.0.0.2, for="10.1.1.1:8080""#,
            ),
        ]);
        assert_eq!(p.client_ip(peer, &h), ip("2001:db8:cafe::17"));
        let quoted = headers(&[("forwarded", r#"for="198.51.100.17";host="a,b;c""#)]);
        assert_eq!(p.client_ip(peer, &quoted), ip("198.51.100.17"));
        let v6_proxy = headers(&[("forwarded", r#"for=192.0.2.60, for="[2001:db8:aa::1]""#)]);
        assert_eq!(p.client_ip(peer, &v6_proxy), ip("192.0.2.60"));
        assert_eq!(
            forwarded_for(r#"for="_gazonk", for=192.0.2.1"#),
            None,
            "an obfuscated node is not an address"
        );
    }

    #[test]
    fn malformed_headers_fall_back_to_the_peer() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        for (name, value) in [
            ("x-forwarded-for", "1.1.1.1, not-an-ip"),
            ("x-forwarded-for", ""),
            ("x-forwarded-for", "1.1.1.1,,2.2.2.2"),
            ("x-forwarded-for", "[2001:db8::1"),
            ("forwarded", "for=unknown"),
            ("forwarded", "proto=https"),
            ("forwarded", r#"for="192.0.2.1"#),
            ("forwarded", "for=192.0.2.1;for=192.0.2.2"),
            ("forwarded", "for=2001:db8::1:80x"),
            ("forwarded", "for=192.0.2.1:99999"),
        ] {
            assert_eq!(
                p.client_ip(peer, &headers(&[(name, value)])),
                peer,
                "{name}: {value}"
            );
        }
    }
}
