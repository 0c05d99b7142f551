//! command/args against an image's ENTRYPOINT and CMD, and `$(VAR)` expansion,
//! checked through each container's log.

use berth_integration::*;
use berth_testkit::busybox_image;
use serde_json::json;

#[tokio::test]
async fn command_and_args_combine_with_the_image_like_the_kubelet() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // An image whose ENTRYPOINT and CMD are visible in the output.
    let reference = "berth.test/echoer:1";
    let archive = agent.work_dir().join("echoer.oci.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    busybox_image(reference)
        .entrypoint(vec!["echo".into(), "entrypoint".into()])
        .cmd(vec!["image-cmd".into()])
        .write_oci_archive(&mut file)
        .unwrap();
    agent.ctr_import(&archive);

    let echoer = |name: &str| json!({ "name": name, "image": reference });
    let mut neither = echoer("neither");
    let mut args_only = echoer("args-only");
    args_only["args"] = json!(["from-args"]);
    let mut command_only = echoer("command-only");
    command_only["command"] = json!(["echo", "from-command"]);
    let mut both = echoer("both");
    both["command"] = json!(["echo", "from-command"]);
    both["args"] = json!(["and-args"]);
    let mut expand = echoer("expand");
    expand["env"] = json!([{ "name": "GREETING", "value": "hi" }]);
    expand["command"] = json!([
        "echo",
        "$(GREETING)",
        "$$(GREETING)",
        "$(UNDEFINED)",
        "$$",
        "a$b"
    ]);
    neither["imagePullPolicy"] = json!("IfNotPresent");

    let spec = pod(
        "cmdargs",
        "Never",
        vec![neither, args_only, command_only, both, expand],
    );
    agent.apply_yaml(&manifest(&spec)).await;
    let done = wait_terminal(&agent, "cmdargs").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");

    let cases = [
        ("neither", "entrypoint image-cmd"),
        ("args-only", "entrypoint from-args"),
        ("command-only", "from-command"),
        ("both", "from-command and-args"),
        ("expand", "hi $(GREETING) $(UNDEFINED) $ a$b"),
    ];
    for (container, expected) in cases {
        let log = logs(&agent, "cmdargs", container).await;
        assert_eq!(log.trim_end(), expected, "container {container}");
    }
}
