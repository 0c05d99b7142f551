//! A small CNI invoker: loads the pod network, runs ADD and DEL plugin by
//! plugin, and caches each ADD result on disk because DEL needs it as
//! `prevResult` (and host-local refuses a second ADD until a DEL ran).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_runtime::{PodRef, PortMapping, RuntimeError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// How long one plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
const CNI_VERSION: &str = "1.0.0";
/// The name under which the loopback network's result is cached.
const LOOPBACK_NETWORK: &str = "cni-loopback";
/// Plugins call iptables and friends.
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where CNI lives on this node.
#[derive(Debug, Clone)]
pub(crate) struct CniPaths {
    pub bin_dirs: Vec<PathBuf>,
    pub conf_dir: PathBuf,
    pub root_dir: PathBuf,
}

/// A network configuration list (a `.conf` file is lifted into a list of one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NetworkList {
    pub name: String,
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub plugins: Vec<Value>,
}

/// One sandbox's attachment to a network.
pub(crate) struct Attachment<'a> {
    pub sandbox_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub pod: &'a PodRef,
    /// The `portMappings` runtime config, CNI-shaped.
    pub port_mappings: &'a [Value],
}

/// What DEL needs later: the network as it was at ADD time and its result.
#[derive(Debug, Serialize, Deserialize)]
struct CachedResult {
    network: NetworkList,
    ifname: String,
    result: Value,
    /// The `portMappings` runtime config of the ADD: portmap's DEL needs it
    /// to find its chains.
    #[serde(default)]
    port_mappings: Vec<Value>,
}

/// The network used when the conf dir holds none.
pub(crate) fn default_network(root_dir: &Path) -> NetworkList {
    let data_dir = root_dir.join("cni").join("networks");
    NetworkList {
        name: "berth".into(),
        cni_version: CNI_VERSION.into(),
        plugins: vec![
            json!({
                "type": "bridge",
                "bridge": "berth0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.88.0.0/16"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir,
                }
            }),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        ],
    }
}

/// The loopback network, run as a network of its own with ifname `lo`.
pub(crate) fn loopback_network() -> NetworkList {
    NetworkList {
        name: LOOPBACK_NETWORK.into(),
        cni_version: CNI_VERSION.into(),
        plugins: vec![json!({"type": "loopback"})],
    }
}

/// The first `*.conflist`, `*.conf` or `*.json` in lexical order, or the built-in default.
pub(crate) fn load_network(conf_dir: &Path, root_dir: &Path) -> Result<NetworkList, RuntimeError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(RuntimeError::other(format!(
                "read CNI config dir {}: {e}",
                conf_dir.display()
            )))
        }
    };
    files.sort();
    let Some(file) = files.first() else {
        return Ok(default_network(root_dir));
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| RuntimeError::other(format!("read CNI config {}: {e}", file.display())))?;
    let is_list = file.extension().is_some_and(|e| e == "conflist");
    parse_network(&text, is_list)
        .map_err(|e| RuntimeError::other(format!("parse CNI config {}: {e}", file.display())))
}

/// Parses a conflist, or a single-plugin conf lifted into a list.
pub(crate) fn parse_network(text: &str, is_list: bool) -> Result<NetworkList, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut network = if is_list {
        serde_json::from_value::<NetworkList>(value).map_err(|e| e.to_string())?
    } else {
        let Value::Object(mut plugin) = value else {
            return Err("not a JSON object".into());
        };
        let name = plugin
            .remove("name")
            .and_then(|v| v.as_str().map(String::from));
        let version = plugin
            .remove("cniVersion")
            .and_then(|v| v.as_str().map(String::from));
        NetworkList {
            name: name.ok_or("missing name")?,
            cni_version: version.unwrap_or_else(|| CNI_VERSION.into()),
            plugins: vec![Value::Object(plugin)],
        }
    };
    if network.plugins.is_empty() {
        return Err("no plugins".into());
    }
    for plugin in &network.plugins {
        if plugin.get("type").and_then(Value::as_str).is_none() {
            return Err("a plugin has no type".into());
        }
    }
    network.name = network.name.trim().to_string();
    Ok(network)
}

/// Adds the sandbox to the loopback and the pod network (concurrently), caches
/// both results and returns the pod IPs. On failure whatever was added is deleted.
pub(crate) async fn setup_pod_network(
    paths: &CniPaths,
    sandbox_id: &str,
    netns: &Path,
    pod: &PodRef,
    port_mappings: &[PortMapping],
) -> Result<Vec<IpAddr>, RuntimeError> {
    let network = load_network(&paths.conf_dir, &paths.root_dir)?;
    let loopback = loopback_network();
    let port_mappings = port_mappings_config(port_mappings);
    let lo = Attachment {
        sandbox_id,
        netns: Some(netns),
        ifname: "lo",
        pod,
        port_mappings: &[],
    };
    let eth0 = Attachment {
        sandbox_id,
        netns: Some(netns),
        ifname: "eth0",
        pod,
        port_mappings: &port_mappings,
    };
    let (lo_result, eth0_result) = tokio::join!(
        add_cached(paths, &loopback, &lo),
        add_cached(paths, &network, &eth0)
    );
    match (lo_result, eth0_result) {
        (Ok(_), Ok(result)) => Ok(result_ips(&result)),
        (lo_result, eth0_result) => {
            let error = eth0_result.err().or(lo_result.err()).expect("one failed");
            if let Err(e) = teardown_pod_network(paths, sandbox_id, Some(netns), pod).await {
                tracing::warn!(sandbox = sandbox_id, error = %e, "CNI cleanup after a failed ADD");
            }
            Err(error)
        }
    }
}

/// Deletes every network the sandbox was added to (from the cache), plugins
/// in reverse order with the cached result as `prevResult`, then drops the cache.
/// Without a cache entry the current pod network is deleted anyway, so an ADD
/// interrupted before caching still releases its address.
pub(crate) async fn teardown_pod_network(
    paths: &CniPaths,
    sandbox_id: &str,
    netns: Option<&Path>,
    pod: &PodRef,
) -> Result<(), RuntimeError> {
    let netns = netns.filter(|p| p.exists());
    let mut cached = cached_results(&paths.root_dir, sandbox_id);
    if !cached.iter().any(|(_, c)| c.ifname == "eth0") {
        let network = load_network(&paths.conf_dir, &paths.root_dir)?;
        cached.push((
            cache_path(&paths.root_dir, sandbox_id, &network.name),
            CachedResult {
                network,
                ifname: "eth0".into(),
                result: Value::Null,
                port_mappings: Vec::new(),
            },
        ));
    }
    let mut first_error = None;
    for (file, entry) in cached {
        let attachment = Attachment {
            sandbox_id,
            netns,
            ifname: &entry.ifname,
            pod,
            port_mappings: &entry.port_mappings,
        };
        let prev = (!entry.result.is_null()).then_some(&entry.result);
        match del(paths, &entry.network, &attachment, prev).await {
            Ok(()) => match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    first_error.get_or_insert(RuntimeError::other(format!(
                        "remove CNI cache {}: {e}",
                        file.display()
                    )));
                }
                _ => {}
            },
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The pod IPs recorded at ADD time (for adoption after a restart).
pub(crate) fn cached_ips(root_dir: &Path, sandbox_id: &str) -> Vec<IpAddr> {
    cached_results(root_dir, sandbox_id)
        .into_iter()
        .filter(|(_, c)| c.ifname == "eth0")
        .flat_map(|(_, c)| result_ips(&c.result))
        .collect()
}

pub(crate) fn cache_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("cni").join("results")
}

fn cache_path(root_dir: &Path, sandbox_id: &str, network: &str) -> PathBuf {
    cache_dir(root_dir).join(format!("{sandbox_id}-{network}.json"))
}

fn cached_results(root_dir: &Path, sandbox_id: &str) -> Vec<(PathBuf, CachedResult)> {
    let prefix = format!("{sandbox_id}-");
    let Ok(entries) = std::fs::read_dir(cache_dir(root_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"))
        })
        .filter_map(|p| {
            let text = std::fs::read(&p).ok()?;
            let cached = serde_json::from_slice::<CachedResult>(&text).ok()?;
            Some((p, cached))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

async fn add_cached(
    paths: &CniPaths,
    network: &NetworkList,
    attachment: &Attachment<'_>,
) -> Result<Value, RuntimeError> {
    let result = add(paths, network, attachment).await?;
    let file = cache_path(&paths.root_dir, attachment.sandbox_id, &network.name);
    let cached = CachedResult {
        network: network.clone(),
        ifname: attachment.ifname.to_string(),
        result: result.clone(),
        port_mappings: attachment.port_mappings.to_vec(),
    };
    let write = || -> std::io::Result<()> {
        use berth_runtime::files::{create_dir, write_private, PRIVATE_DIR_MODE};
        create_dir(&cache_dir(&paths.root_dir), PRIVATE_DIR_MODE)?;
        write_private(&file, &serde_json::to_vec(&cached)?)
    };
    write().map_err(|e| {
        RuntimeError::other(format!("write CNI result cache {}: {e}", file.display()))
    })?;
    Ok(result)
}

/// ADD through every plugin of the list, each fed the previous one's result.
async fn add(
    paths: &CniPaths,
    network: &NetworkList,
    attachment: &Attachment<'_>,
) -> Result<Value, RuntimeError> {
    let mut prev: Option<Value> = None;
    for plugin in &network.plugins {
        let stdin = plugin_stdin(network, plugin, prev.as_ref(), attachment.port_mappings);
        let out = invoke(paths, "ADD", plugin, &stdin, attachment).await?;
        prev = Some(serde_json::from_slice(&out).map_err(|e| {
            RuntimeError::other(format!(
                "CNI plugin {} ADD on network {}: bad result: {e}",
                plugin_type(plugin),
                network.name
            ))
        })?);
    }
    Ok(prev.unwrap_or(Value::Null))
}

async fn del(
    paths: &CniPaths,
    network: &NetworkList,
    attachment: &Attachment<'_>,
    prev: Option<&Value>,
) -> Result<(), RuntimeError> {
    for plugin in network.plugins.iter().rev() {
        let stdin = plugin_stdin(network, plugin, prev, attachment.port_mappings);
        invoke(paths, "DEL", plugin, &stdin, attachment).await?;
    }
    Ok(())
}

/// The plugin's config as the CNI spec hands it over: the plugin object plus
/// the list's name and version, `prevResult`, and the runtime config for the
/// capabilities the plugin declares.
/// Port mappings as CNI's `portMappings` capability takes them.
pub(crate) fn port_mappings_config(port_mappings: &[PortMapping]) -> Vec<Value> {
    port_mappings
        .iter()
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.to_ascii_lowercase(),
            });
            if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                m["hostIP"] = json!(ip);
            }
            m
        })
        .collect()
}

pub(crate) fn plugin_stdin(
    network: &NetworkList,
    plugin: &Value,
    prev: Option<&Value>,
    port_mappings: &[Value],
) -> Value {
    let mut conf = plugin.clone();
    let Some(obj) = conf.as_object_mut() else {
        return conf;
    };
    obj.insert("name".into(), json!(network.name));
    obj.insert("cniVersion".into(), json!(network.cni_version));
    if let Some(prev) = prev {
        obj.insert("prevResult".into(), prev.clone());
    }
    let wants_ports = plugin
        .pointer("/capabilities/portMappings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    obj.remove("runtimeConfig");
    if wants_ports && !port_mappings.is_empty() {
        obj.insert(
            "runtimeConfig".into(),
            json!({ "portMappings": port_mappings }),
        );
    }
    conf
}

fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("?")
}

/// Runs one plugin binary with the CNI environment; returns its stdout.
async fn invoke(
    paths: &CniPaths,
    command: &str,
    plugin: &Value,
    stdin: &Value,
    attachment: &Attachment<'_>,
) -> Result<Vec<u8>, RuntimeError> {
    let kind = plugin_type(plugin);
    let fail = |what: String| {
        RuntimeError::other(format!(
            "CNI plugin {kind} {command} for sandbox {} ({}): {what}",
            attachment.sandbox_id, attachment.ifname
        ))
    };
    let binary = paths
        .bin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| fail("plugin binary not found in the CNI bin dirs".into()))?;
    let cni_path = std::env::join_paths(&paths.bin_dirs).map_err(|e| fail(e.to_string()))?;
    let pod = attachment.pod;
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        pod.namespace, pod.name, attachment.sandbox_id, pod.uid
    );
    let netns = attachment
        .netns
        .map(|p| p.as_os_str().to_owned())
        .unwrap_or_default();
    let mut child = tokio::process::Command::new(&binary)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", attachment.sandbox_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", attachment.ifname)
        .env("CNI_ARGS", args)
        .env("CNI_PATH", cni_path)
        .env("PATH", PLUGIN_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("spawn {}: {e}", binary.display())))?;
    let input = serde_json::to_vec(stdin).map_err(|e| fail(e.to_string()))?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let run = async {
        pipe.write_all(&input).await?;
        drop(pipe);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(PLUGIN_TIMEOUT, run)
        .await
        .map_err(|_| fail(format!("timed out after {PLUGIN_TIMEOUT:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    tracing::debug!(plugin = kind, command, sandbox = attachment.sandbox_id, status = ?output.status, "CNI plugin ran");
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(fail(plugin_error(&output.stdout, &output.stderr)))
}

/// The plugin's error JSON (`code`, `msg`, `details`) in one line.
pub(crate) fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(error) = serde_json::from_slice::<Value>(stdout) {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let msg = error.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = error.get("details").and_then(Value::as_str).unwrap_or("");
        return match details.is_empty() {
            true => format!("{msg} (code {code})"),
            false => format!("{msg}: {details} (code {code})"),
        };
    }
    let text = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
    text.trim().to_string()
}

/// The addresses of a CNI result (`ips[].address`, CIDR notation).
pub(crate) fn result_ips(result: &Value) -> Vec<IpAddr> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_is_a_masquerading_bridge_with_portmap() {
        let net = default_network(Path::new("/var/lib/berth"));
        assert_eq!(net.name, "berth");
        let bridge = &net.plugins[0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "berth0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/berth/cni/networks");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(net.plugins[1]["type"], "portmap");
        assert_eq!(net.plugins[1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn an_empty_or_missing_conf_dir_gives_the_default() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let net = load_network(&tmp.path().join("missing"), &root).unwrap();
        assert_eq!(net, default_network(&root));
        std::fs::write(tmp.path().join("README"), "not a config").unwrap();
        assert_eq!(
            load_network(tmp.path(), &root).unwrap(),
            default_network(&root)
        );
    }

    #[test]
    fn the_first_config_in_lexical_order_wins_and_conf_files_are_lifted() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("20-b.conflist"),
            r#"{"cniVersion":"0.4.0","name":"b","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("10-a.conf"),
            r#"{"cniVersion":"0.3.1","name":"a","type":"bridge","bridge":"x0"}"#,
        )
        .unwrap();
        let net = load_network(tmp.path(), tmp.path()).unwrap();
        assert_eq!(net.name, "a");
        assert_eq!(net.cni_version, "0.3.1");
        assert_eq!(net.plugins, vec![json!({"type": "bridge", "bridge": "x0"})]);
        std::fs::remove_file(tmp.path().join("10-a.conf")).unwrap();
        let net = load_network(tmp.path(), tmp.path()).unwrap();
        assert_eq!(net.name, "b");
        assert_eq!(net.plugins, vec![json!({"type": "ptp"})]);
    }

    #[test]
    fn broken_configs_are_rejected() {
        assert!(parse_network("{", true).is_err());
        assert!(parse_network(r#"{"name":"x","cniVersion":"1.0.0","plugins":[]}"#, true).is_err());
        assert!(parse_network(r#"{"name":"x","plugins":[{"mtu":1}]}"#, false).is_err());
        assert!(parse_network(r#"{"type":"bridge"}"#, false).is_err());
    }

    #[test]
    fn plugin_stdin_carries_name_version_prev_result_and_declared_capabilities() {
        let net = default_network(Path::new("/r"));
        let ports = port_mappings_config(&[PortMapping {
            host_port: 18080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: Some("127.0.0.1".into()),
        }]);
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let bridge = plugin_stdin(&net, &net.plugins[0], None, &ports);
        assert_eq!(bridge["name"], "berth");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge declares no capability"
        );
        let portmap = plugin_stdin(&net, &net.plugins[1], Some(&prev), &ports);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
        );
        let no_ports = plugin_stdin(&net, &net.plugins[1], Some(&prev), &[]);
        assert!(no_ports.get("runtimeConfig").is_none());
    }

    #[test]
    fn result_ips_and_errors_are_read() {
        let result = json!({"ips": [{"address": "10.88.0.7/16", "gateway": "10.88.0.1"},
                                     {"address": "fd00::7/64"}]});
        assert_eq!(
            result_ips(&result),
            vec![
                "10.88.0.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert!(result_ips(&Value::Null).is_empty());
        assert_eq!(
            plugin_error(
                br#"{"code":7,"msg":"failed to allocate","details":"range full"}"#,
                b""
            ),
            "failed to allocate: range full (code 7)"
        );
        assert_eq!(plugin_error(b"", b"boom\n"), "boom");
    }
}
