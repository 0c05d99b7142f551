//! Facts about this node the pods' status needs.

use std::net::IpAddr;

/// The node's IP as the kubelet reports `hostIP`: the address of the
/// interface holding the default route, else the first non-loopback IPv4.
pub fn host_ip() -> String {
    let default_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|routes| {
            routes.lines().skip(1).find_map(|line| {
                let mut fields = line.split_whitespace();
                let iface = fields.next()?;
                (fields.next()? == "00000000").then(|| iface.to_string())
            })
        });
    let addrs: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let ip = a.address?.as_sockaddr_in()?.ip();
                    Some((a.interface_name, IpAddr::V4(ip)))
                })
                .collect()
        })
        .unwrap_or_default();
    addrs
        .iter()
        .find(|(iface, _)| Some(iface) == default_iface.as_ref())
        .or_else(|| addrs.iter().find(|(_, ip)| !ip.is_loopback()))
        .map_or_else(|| "127.0.0.1".into(), |(_, ip)| ip.to_string())
}
