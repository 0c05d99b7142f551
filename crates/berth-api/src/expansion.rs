//! The kubelet's `$(VAR)` expansion (third_party/forked/golang/expansion):
//! `$(NAME)` becomes the value when NAME is defined and stays literally
//! `$(NAME)` otherwise; `$$` is an escaped `$`; any other `$`, and an
//! unterminated `$(`, is kept as written.

/// Expands `$(NAME)` references in `input` using `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A trailing `$` is literal.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                // Unterminated: keep `$(` and carry on after it.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            // Go copies `$` plus the next byte; we copy the whole character
            // so multi-byte text stays valid UTF-8.
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "VAR_A" => Some("A".into()),
            "VAR_B" => Some("B".into()),
            "VAR_C" => Some("C".into()),
            "VAR_REF" => Some("$(VAR_A)".into()),
            "VAR_EMPTY" => Some(String::new()),
            "" => None,
            _ => None,
        }
    }

    #[test]
    fn expansion_table() {
        let cases = [
            ("", ""),
            ("plain text", "plain text"),
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_EMPTY)", ""),
            ("x$(VAR_EMPTY)y", "xy"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("a $(UNDEFINED) b $(VAR_A)", "a $(UNDEFINED) b A"),
            ("$()", "$()"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$", "$"),
            ("$$$", "$$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$VAR_A", "$VAR_A"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(", "$("),
            ("$(VAR_A)$", "A$"),
            ("$)", "$)"),
            ("($(VAR_A))", "(A)"),
            ("$é$(VAR_A)", "$éA"),
            ("ünï $(VAR_B) çødé", "ünï B çødé"),
            ("$(VAR_A)$(VAR_A", "A$(VAR_A"),
            ("$(VAR A)", "$(VAR A)"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup), want, "input {input:?}");
        }
    }

    #[test]
    fn reference_runs_to_the_first_closer() {
        // The name is everything up to the first `)`, even another `$(`.
        assert_eq!(expand("$($(VAR_A)", lookup), "$($(VAR_A)");
        // Without any `)` the `$(` is kept and scanning resumes after it.
        assert_eq!(expand("$($$", lookup), "$($");
    }
}
