//! A Dockerfile read into its stages: enough to check what each image runs.

/// One `FROM ... AS name` stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: Option<String>,
    pub from: String,
    /// The exec-form ENTRYPOINT (JSON array), if the stage sets one.
    pub entrypoint: Option<Vec<String>>,
    /// `COPY` instructions as (flags, sources, destination).
    pub copies: Vec<Copy>,
    /// `RUN` instructions, continuation lines joined.
    pub runs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub from_stage: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

/// Parses the instructions of a Dockerfile (comments and continuation lines handled).
/// A shell-form ENTRYPOINT or an instruction before the first FROM (other than ARG) is
/// an error: the images must run their binary directly.
pub fn parse(text: &str) -> Result<Vec<Stage>, String> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        return Err("the last instruction ends with a continuation backslash".to_owned());
    }
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in logical {
        let (word, rest) = instruction
            .split_once(char::is_whitespace)
            .map(|(w, r)| (w.to_ascii_uppercase(), r.trim().to_owned()))
            .unwrap_or_else(|| (instruction.to_ascii_uppercase(), String::new()));
        if word == "FROM" {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let (from, name) = match parts.as_slice() {
                [from] => (*from, None),
                [from, as_, name] if as_.eq_ignore_ascii_case("as") => (*from, Some(*name)),
                _ => return Err(format!("cannot read `FROM {rest}`")),
            };
            stages.push(Stage {
                name: name.map(str::to_owned),
                from: from.to_owned(),
                entrypoint: None,
                copies: Vec::new(),
                runs: Vec::new(),
            });
            continue;
        }
        let Some(stage) = stages.last_mut() else {
            if word == "ARG" {
                continue;
            }
            return Err(format!("`{word}` before the first FROM"));
        };
        match word.as_str() {
            "ENTRYPOINT" => {
                let argv: Vec<String> = serde_json::from_str(&rest).map_err(|_| {
                    format!("ENTRYPOINT {rest}: use the exec form (a JSON array), not a shell")
                })?;
                stage.entrypoint = Some(argv);
            }
            "COPY" => {
                let mut from_stage = None;
                let mut paths = Vec::new();
                for part in rest.split_whitespace() {
                    if let Some(s) = part.strip_prefix("--from=") {
                        from_stage = Some(s.to_owned());
                    } else if !part.starts_with("--") {
                        paths.push(part.to_owned());
                    }
                }
                let dest = paths
                    .pop()
                    .ok_or_else(|| format!("COPY {rest}: no paths"))?;
                stage.copies.push(Copy {
                    from_stage,
                    sources: paths,
                    dest,
                });
            }
            "RUN" => stage.runs.push(rest),
            _ => {}
        }
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_entrypoints_and_copies_are_read() {
        let text = "ARG X=1\nFROM rust AS builder\nRUN cargo build \\\n  --release\n# c\n\
                    FROM scratch AS app\nCOPY --from=builder /out/app /usr/local/bin/app\n\
                    ENTRYPOINT [\"/usr/local/bin/app\"]\n";
        let stages = parse(text).expect("parses");
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].runs, vec!["cargo build  --release".to_owned()]);
        assert_eq!(stages[1].name.as_deref(), Some("app"));
        assert_eq!(
            stages[1].entrypoint,
            Some(vec!["/usr/local/bin/app".to_owned()])
        );
        assert_eq!(stages[1].copies[0].from_stage.as_deref(), Some("builder"));
        assert_eq!(stages[1].copies[0].dest, "/usr/local/bin/app");
    }

    #[test]
    fn a_shell_form_entrypoint_is_refused() {
        let err = parse("FROM scratch AS a\nENTRYPOINT /bin/app serve\n").expect_err("shell form");
        assert!(err.contains("exec form"), "{err}");
        assert!(parse("RUN true\nFROM scratch\n").is_err());
    }
}
