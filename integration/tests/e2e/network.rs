//! Pod networking: the pod IP is reachable from the host, containers of a pod
//! share localhost and emptyDir volumes.

use std::time::Duration;

use berth_integration::*;
use serde_json::json;
use tokio::time::Instant;

#[tokio::test]
async fn pod_runs_and_its_ip_is_reachable_from_the_host() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script =
        "mkdir -p /www && echo hello-from-berth > /www/index.html && exec httpd -f -p 80 -h /www";
    agent
        .apply_yaml(&manifest(&pod(
            "web",
            "Always",
            vec![sh_container("httpd", script)],
        )))
        .await;
    let running = wait_running(&agent, "web").await;
    let ip = pod_ip(&running)
        .expect("a Running pod has a podIP")
        .to_owned();
    let prefix = agent.network().subnet().trim_end_matches("0/24").to_owned();
    assert!(
        ip.starts_with(&prefix),
        "podIP {ip} outside {}",
        agent.network().subnet()
    );
    assert_eq!(running["status"]["podIPs"][0]["ip"], ip.as_str());

    let response = http_get(&ip, 80, "/index.html", Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1."), "{response}");
    assert!(response.contains("hello-from-berth"), "{response}");
}

#[tokio::test]
async fn containers_share_localhost_and_an_empty_dir() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // The client writes the page into the shared volume; the server serves it
    // on the pod's loopback; the client fetches it over 127.0.0.1.
    let mut server = sh_container("server", "exec httpd -f -p 8080 -h /data");
    let mut client = sh_container(
        "client",
        "echo shared-page > /data/index.html; \
         until wget -qO- http://127.0.0.1:8080/index.html; do sleep 0.2; done; \
         exec sleep 3600",
    );
    server["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    client["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut spec = pod("pair", "Always", vec![server, client]);
    spec["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;
    wait_running(&agent, "pair").await;

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let out = agent.cli(&["logs", "pair", "-c", "client"]).await;
        if String::from_utf8_lossy(&out.stdout).contains("shared-page") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client never fetched the page; its log: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_pod_name_longer_than_a_hostname_is_cut_to_63_characters() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // Pod names may be 253 characters; the kernel takes a 64-byte host name.
    let name = format!("{}-{}", "a".repeat(62), "b".repeat(20));
    let script = "echo \"$(hostname) $HOSTNAME $(cat /etc/hostname)\"";
    let spec = pod(
        &name,
        "Never",
        vec![json!({ "name": "c", "image": TEST_IMAGE, "command": ["sh", "-c", script] })],
    );
    agent.apply_yaml(&manifest(&spec)).await;
    let done = wait_terminal(&agent, &name).await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    let expected = "a".repeat(62);
    assert_eq!(
        logs(&agent, &name, "c").await.trim_end(),
        format!("{expected} {expected} {expected}")
    );
}

#[tokio::test]
async fn host_aliases_are_written_to_the_pods_etc_hosts() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut spec = pod(
        "aliases",
        "Never",
        vec![json!({ "name": "c", "image": TEST_IMAGE, "command": ["cat", "/etc/hosts"] })],
    );
    spec["spec"]["hostAliases"] = json!([
        { "ip": "123.45.67.89", "hostnames": ["foo.remote", "bar.remote"] }
    ]);
    agent.apply_yaml(&manifest(&spec)).await;
    let done = wait_terminal(&agent, "aliases").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    let hosts = logs(&agent, "aliases", "c").await;
    assert!(
        hosts
            .ends_with("\n# Entries added by HostAliases.\n123.45.67.89\tfoo.remote\tbar.remote\n"),
        "{hosts}"
    );
}

#[tokio::test]
async fn subdomain_fqdn_and_hostname_override_name_the_pod_as_the_kubelet_does() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script =
        "echo \"$(hostname) $HOSTNAME $(cat /etc/hostname)\"; grep -v '^#' /etc/hosts | tail -1";
    let cases = [
        // (pod, spec fields, first log line, the hosts file's pod line without its IP)
        (
            "sub",
            json!({ "hostname": "db", "subdomain": "backend" }),
            "db db db",
            "db.backend.default.svc.\tdb",
        ),
        (
            "fqdn",
            json!({ "hostname": "db", "subdomain": "backend", "setHostnameAsFQDN": true }),
            "db.backend.default.svc. db.backend.default.svc. db.backend.default.svc.",
            "db.backend.default.svc.\tdb",
        ),
        (
            "override",
            json!({ "hostname": "db", "hostnameOverride": "worker-1.example" }),
            "worker-1.example worker-1.example worker-1.example",
            "worker-1.example",
        ),
    ];
    for (name, fields, _, _) in &cases {
        let mut spec = pod(
            name,
            "Never",
            vec![json!({ "name": "c", "image": TEST_IMAGE, "command": ["sh", "-c", script] })],
        );
        for (key, value) in fields.as_object().unwrap() {
            spec["spec"][key] = value.clone();
        }
        agent.apply_yaml(&manifest(&spec)).await;
    }
    for (name, _, names, hosts_line) in cases {
        let done = wait_terminal(&agent, name).await;
        assert_eq!(phase(&done), "Succeeded", "{done:#}");
        let log = logs(&agent, name, "c").await;
        let mut lines = log.lines();
        assert_eq!(lines.next(), Some(names), "{name}: {log}");
        let ip = done["status"]["podIP"].as_str().unwrap();
        assert_eq!(
            lines.next(),
            Some(format!("{ip}\t{hosts_line}").as_str()),
            "{name}: {log}"
        );
    }
}
