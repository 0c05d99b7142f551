//! The process a container runs: how `command`/`args` combine with the
//! image's ENTRYPOINT/CMD (docs/kubelet-semantics.md §11), and their `$(VAR)`
//! expansion.

use crate::expansion;

/// The argv the runtime starts: `command` set → command + args (ENTRYPOINT and
/// CMD ignored); only `args` → ENTRYPOINT + args; neither → ENTRYPOINT + CMD.
pub fn container_args(
    image_entrypoint: &[String],
    image_cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    let (head, tail) = match (command.is_empty(), args.is_empty()) {
        (false, _) => (command, args),
        (true, false) => (image_entrypoint, args),
        (true, true) => (image_entrypoint, image_cmd),
    };
    head.iter().chain(tail).cloned().collect()
}

/// `ExpandContainerCommandAndArgs`: expands every element of `command` and
/// `args` against `env` (the kubelet's env for the container, later entries
/// winning over earlier ones with the same name).
pub fn expand_command_and_args(
    command: &[String],
    args: &[String],
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expand_all = |items: &[String]| -> Vec<String> {
        items.iter().map(|s| expansion::expand(s, lookup)).collect()
    };
    (expand_all(command), expand_all(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_args_matrix() {
        let ep = v(&["/entry", "-x"]);
        let cmd = v(&["default", "arg"]);
        // (entrypoint, cmd, command, args, expected)
        type Row = (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
        );
        let cases: Vec<Row> = vec![
            // neither: ENTRYPOINT + CMD
            (
                ep.clone(),
                cmd.clone(),
                v(&[]),
                v(&[]),
                v(&["/entry", "-x", "default", "arg"]),
            ),
            // only args: ENTRYPOINT + args (CMD dropped)
            (
                ep.clone(),
                cmd.clone(),
                v(&[]),
                v(&["a1"]),
                v(&["/entry", "-x", "a1"]),
            ),
            // only command: command alone (ENTRYPOINT and CMD dropped)
            (
                ep.clone(),
                cmd.clone(),
                v(&["/bin/sh"]),
                v(&[]),
                v(&["/bin/sh"]),
            ),
            // both: command + args
            (
                ep.clone(),
                cmd.clone(),
                v(&["/bin/sh", "-c"]),
                v(&["echo hi"]),
                v(&["/bin/sh", "-c", "echo hi"]),
            ),
            // image without ENTRYPOINT
            (v(&[]), cmd.clone(), v(&[]), v(&[]), v(&["default", "arg"])),
            (
                v(&[]),
                cmd.clone(),
                v(&[]),
                v(&["a1", "a2"]),
                v(&["a1", "a2"]),
            ),
            // image without CMD
            (ep.clone(), v(&[]), v(&[]), v(&[]), v(&["/entry", "-x"])),
            // empty image and spec
            (v(&[]), v(&[]), v(&[]), v(&[]), v(&[])),
            (v(&[]), v(&[]), v(&["true"]), v(&[]), v(&["true"])),
        ];
        for (i, (ep, cmd, command, args, want)) in cases.into_iter().enumerate() {
            assert_eq!(container_args(&ep, &cmd, &command, &args), want, "case {i}");
        }
    }

    #[test]
    fn expands_against_env_with_last_definition_winning() {
        let env = vec![
            ("A".to_string(), "first".to_string()),
            ("B".to_string(), "bee".to_string()),
            ("A".to_string(), "second".to_string()),
        ];
        let (command, args) =
            expand_command_and_args(&v(&["echo", "$(A)"]), &v(&["$(B)-$(C)", "$$(A)"]), &env);
        assert_eq!(command, v(&["echo", "second"]));
        assert_eq!(args, v(&["bee-$(C)", "$(A)"]));
    }
}
