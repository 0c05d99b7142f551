//! The kubectl-like client: `get pods` columns, `exec`, `image import`/`ls`.

use berth_integration::*;
use berth_testkit::busybox_image;

#[tokio::test]
async fn get_pods_prints_kubectl_columns() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "columns",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    wait_running(&agent, "columns").await;

    let out = agent.cli_ok(&["get", "pods"]).await;
    let mut lines = out.lines();
    let header: Vec<_> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    let row: Vec<_> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(row[..4], ["columns", "1/1", "Running", "0"], "{out}");
    assert!(
        row[4].ends_with('s') || row[4].ends_with('m'),
        "age {:?}",
        row[4]
    );
    assert!(lines.next().is_none(), "{out}");

    let wide = agent.cli_ok(&["get", "pods", "-o", "wide"]).await;
    let header = wide.lines().next().unwrap();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.split_whitespace().any(|c| c == column), "{wide}");
    }
    let pod = agent.get_pod_json("default", "columns").await;
    assert!(wide.contains(pod_ip(&pod).unwrap()), "{wide}");

    let other_ns = agent.cli_ok(&["get", "pods", "-n", "kube-system"]).await;
    assert!(!other_ns.contains("columns"), "{other_ns}");
}

#[tokio::test]
async fn exec_returns_output_and_exit_code() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "shell",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    wait_running(&agent, "shell").await;

    let out = agent
        .cli(&[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out-$(hostname); echo err >&2; exit 7",
        ])
        .await;
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "out-shell");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));

    let ok = agent
        .cli(&["exec", "shell", "-c", "main", "--", "true"])
        .await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
}

#[tokio::test]
async fn image_import_then_ls() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let reference = "berth.test/imported:2";
    let archive = agent.work_dir().join("imported.oci.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    busybox_image(reference)
        .write_oci_archive(&mut file)
        .unwrap();

    agent
        .cli_ok(&["image", "import", &archive.to_string_lossy()])
        .await;
    let ls = agent.cli_ok(&["image", "ls"]).await;
    assert!(ls.contains(reference), "{ls}");
    assert!(ls.contains(TEST_IMAGE), "{ls}");

    // The imported image runs, with pull policy Never.
    let mut container = sh_container("main", "echo imported-ok");
    container["image"] = reference.into();
    container["imagePullPolicy"] = "Never".into();
    agent
        .apply_yaml(&manifest(&pod("from-import", "Never", vec![container])))
        .await;
    let done = wait_terminal(&agent, "from-import").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    assert_eq!(
        logs(&agent, "from-import", "main").await.trim_end(),
        "imported-ok"
    );
}
