//! The language checked in one pass: generated cases over the shipped
//! playbooks and over every key of the language.

use runbook::playbook::Playbook;

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const EXAMPLES: &[&str] = &[
    "playbooks/dts-di-cutover.yaml",
    "playbooks/di-realtime-maintenance-stop.yaml",
    "playbooks/di-status-report.yaml",
    "playbooks/stop-di-job.yaml",
];

/// One error to inject: a line inserted after line `after` (1-based), and
/// what `validate` must say about it.
#[derive(Clone, Debug)]
struct Injection {
    after: usize,
    indent: usize,
    key: String,
    value: String,
    /// Where the error points: the key (`None`) or this many characters into the value.
    value_offset: Option<usize>,
    message: String,
}

/// Where errors can go in `text`: each candidate is independent of the
/// others (different keys, or different mappings).
fn candidates(text: &str, n: usize) -> Vec<Injection> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut inj = |after: usize, indent: usize, key: &str, value: &str, off, message: String| {
        out.push(Injection {
            after,
            indent,
            key: key.to_owned(),
            value: value.to_owned(),
            value_offset: off,
            message,
        });
    };
    // Top level: an unknown key (after `name:`, the first line that is one).
    let name_line = lines.iter().position(|l| l.starts_with("name:")).unwrap() + 1;
    inj(
        name_line,
        0,
        &format!("bogus_top_{n}"),
        "1",
        None,
        format!("unknown field `bogus_top_{n}` at the top level"),
    );
    if let Some(d) = lines.iter().position(|l| l.starts_with("defaults:")) {
        inj(
            d + 1,
            2,
            &format!("bogus_default_{n}"),
            "1",
            None,
            format!("unknown field `bogus_default_{n}`"),
        );
    }
    if let Some(p) = lines.iter().position(|l| l.starts_with("params:")) {
        inj(
            p + 1,
            2,
            &format!("p_bad_{n}"),
            "{ type: strin }",
            Some(8),
            "unknown value `strin`".to_owned(),
        );
    }
    // Steps: `- id:` lines; a step's keys sit two columns right of the dash.
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("- id:"))
        .map(|(i, _)| i)
        .collect();
    for (si, &start) in starts.iter().enumerate() {
        let end = starts.get(si + 1).copied().unwrap_or(lines.len());
        let indent = lines[start].find('-').unwrap() + 2;
        let body = &lines[start..end];
        let has = |key: &str| {
            body.iter().any(|l| {
                l.len() > indent
                    && l[..indent].trim().trim_start_matches('-').trim().is_empty()
                    && l[indent..].starts_with(&format!("{key}:"))
            }) || (key == "id")
        };
        let compensation = body.iter().any(|l| l.contains("compensation: true"));
        let at = start + 1;
        inj(
            at,
            indent,
            &format!("bogus_{n}_{si}"),
            "1",
            None,
            format!("unknown field `bogus_{n}_{si}`"),
        );
        if !has("description") {
            inj(
                at,
                indent,
                "description",
                "[1]",
                Some(0),
                "expected a string, found a list".to_owned(),
            );
        }
        if !has("timeout") {
            inj(
                at,
                indent,
                "timeout",
                "5 parsecs",
                Some(0),
                "invalid duration `5 parsecs`".to_owned(),
            );
        }
        if !has("retry") {
            inj(
                at,
                indent,
                "retry",
                "{ atempts: 2 }",
                Some(2),
                "unknown field `atempts`".to_owned(),
            );
        }
        if !has("when") {
            inj(
                at,
                indent,
                "when",
                &format!("\"{{{{params.nope_{n}}}}}\""),
                Some(1),
                format!("unknown param `nope_{n}`"),
            );
        }
        if !has("needs") && !compensation {
            inj(
                at,
                indent,
                "needs",
                &format!("[nope-{n}]"),
                Some(1),
                format!("needs unknown step `nope-{n}`"),
            );
        }
        if !has("region") {
            inj(
                at,
                indent,
                "region",
                "Bad_Region",
                Some(0),
                "invalid region `Bad_Region`".to_owned(),
            );
        }
        if !has("on_failure") {
            inj(
                at,
                indent,
                "on_failure",
                "retry",
                Some(0),
                "unknown value `retry`".to_owned(),
            );
        }
        // Inside a block `wait:` mapping.
        if let Some(w) = body.iter().position(|l| l.trim_end().ends_with("wait:")) {
            let inner = body[w + 1].len() - body[w + 1].trim_start().len();
            inj(
                start + w + 1,
                inner,
                &format!("bogus_wait_{n}"),
                "1",
                None,
                format!("unknown field `bogus_wait_{n}`"),
            );
            if !body.iter().any(|l| l.trim_start().starts_with("every:")) {
                inj(
                    start + w + 1,
                    inner,
                    "every",
                    "2 fortnights",
                    Some(0),
                    "invalid duration `2 fortnights`".to_owned(),
                );
            }
        }
    }
    out
}

/// `text` with `chosen` inserted, and where each error must be reported
/// (line, column, message).
fn inject(text: &str, chosen: &[Injection]) -> (String, Vec<(u32, u32, String)>) {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut order: Vec<&Injection> = chosen.iter().collect();
    order.sort_by_key(|i| i.after);
    let mut expected = Vec::new();
    for (shift, i) in order.into_iter().enumerate() {
        let at = i.after + shift;
        lines.insert(
            at,
            format!("{}{}: {}", " ".repeat(i.indent), i.key, i.value),
        );
        let col = match i.value_offset {
            None => i.indent + 1,
            Some(off) => i.indent + i.key.len() + 2 + off + 1,
        };
        expected.push((at as u32 + 1, col as u32, i.message.clone()));
    }
    (lines.join("\n") + "\n", expected)
}

#[test]
fn the_examples_are_valid() {
    for path in EXAMPLES {
        Playbook::load(std::path::Path::new(path)).unwrap_or_else(|d| panic!("{}", d.render()));
    }
}

/// k independent errors injected at random places are all reported by one
/// `validate`, each at its own position.
#[test]
fn every_injected_error_is_reported_at_once() {
    let mut cases = 0;
    for path in EXAMPLES {
        let text = std::fs::read_to_string(path).unwrap();
        for seed in 0..150u64 {
            let mut rng = Rng::new(seed + 1);
            let mut pool = candidates(&text, seed as usize);
            let k = 1 + rng.below(pool.len().min(8));
            let mut chosen = Vec::new();
            for _ in 0..k {
                chosen.push(pool.swap_remove(rng.below(pool.len())));
            }
            let (broken, expected) = inject(&text, &chosen);
            assert_eq!(
                expected.len(),
                k,
                "{path} seed {seed}: injected lines must be distinct"
            );
            let diags = match Playbook::from_str("t.yaml", &broken) {
                Ok(_) => panic!("{path} seed {seed}: accepted\n{broken}"),
                Err(d) => d,
            };
            let got: Vec<(u32, u32, String)> = diags
                .items()
                .iter()
                .map(|d| {
                    let l = d.loc.expect("located");
                    (l.line, l.col, d.message.clone())
                })
                .collect();
            let report = format!("{path} seed {seed}:\n{}\n{broken}", diags.render());
            assert_eq!(got.len(), k, "{report}");
            for (line, col, message) in &expected {
                assert!(
                    got.iter()
                        .any(|(l, c, m)| l == line && c == col && m.contains(message.as_str())),
                    "missing `{message}` at {line}:{col} in {report}"
                );
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 150 * EXAMPLES.len());
}

/// One-edit typos of `key`: each letter dropped, doubled, replaced, and
/// each neighbour pair swapped.
fn typos(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        let mut v = chars.clone();
        v.remove(i);
        out.push(v.iter().collect());
        let mut v = chars.clone();
        v.insert(i, chars[i]);
        out.push(v.iter().collect());
        let mut v = chars.clone();
        v[i] = if chars[i] == 'q' { 'z' } else { 'q' };
        out.push(v.iter().collect());
        if i + 1 < chars.len() && chars[i] != chars[i + 1] {
            let mut v = chars.clone();
            v.swap(i, i + 1);
            out.push(v.iter().collect());
        }
    }
    out.retain(|t: &String| !t.is_empty() && !t.starts_with('_'));
    out
}

/// A playbook with the line `KEY: 1` in the mapping that `def` describes.
fn context(def: &str) -> &'static str {
    match def {
        "" => "name: t\nKEY: 1\nsteps:\n  - id: a\n    sleep: 1s\n",
        "ParamDecl" => {
            "name: t\nparams:\n  p:\n    type: string\n    KEY: 1\nsteps:\n  - id: a\n    sleep: 1s\n"
        }
        "Defaults" => "name: t\ndefaults:\n  KEY: 1\nsteps:\n  - id: a\n    sleep: 1s\n",
        "RetryObject" => {
            "name: t\ndefaults:\n  retry:\n    attempts: 2\n    KEY: 1\nsteps:\n  - id: a\n    sleep: 1s\n"
        }
        "OnFailureRun" => {
            "name: t\nsteps:\n  - id: a\n    sleep: 1s\n    on_failure:\n      run: [u]\n      KEY: 1\n  - id: u\n    compensation: true\n    sleep: 1s\n"
        }
        "Step" => "name: t\nsteps:\n  - id: a\n    sleep: 1s\n    KEY: 1\n",
        "WaitSpec" => {
            "name: t\ndefaults:\n  region: cn-hangzhou\nsteps:\n  - id: a\n    wait:\n      call: dts.DescribeDtsJobDetail\n      with: { DtsJobId: j }\n      until: { select: Status, in: [x] }\n      KEY: 1\n"
        }
        "ConditionSpec" => {
            "name: t\ndefaults:\n  region: cn-hangzhou\nsteps:\n  - id: a\n    wait:\n      call: dts.DescribeDtsJobDetail\n      with: { DtsJobId: j }\n      until:\n        select: Status\n        in: [x]\n        KEY: 1\n"
        }
        "WhenMatch" => {
            "name: t\nparams:\n  x: { type: string }\nsteps:\n  - id: a\n    sleep: 1s\n    when:\n      value: '{{params.x}}'\n      equals: y\n      KEY: 1\n"
        }
        "api" => {
            "name: t\ndefaults:\n  region: cn-hangzhou\nsteps:\n  - id: a\n    call: api\n    with:\n      product: ecs\n      version: '2014-05-26'\n      action: DescribeInstances\n      risk: read\n      KEY: 1\n"
        }
        "WindowSpec" => {
            "name: t\nwindow:\n  tz: UTC\n  slots: ['Sat 02:00-05:00']\n  KEY: 1\nsteps:\n  - id: a\n    sleep: 1s\n"
        }
        "NotifySpec" => {
            "name: t\nnotify:\n  - kind: webhook\n    url: http://127.0.0.1:1/hook\n    KEY: 1\nsteps:\n  - id: a\n    sleep: 1s\n"
        }
        "ApproveObject" => {
            "name: t\nsteps:\n  - id: a\n    approve:\n      message: Go?\n      KEY: 1\n"
        }
        other => panic!("no context for mapping `{other}`: add one"),
    }
}

/// Every key of every mapping of the language (from the JSON Schema, plus
/// the keys of `call: api`), misspelt by one edit, gets "did you mean" that key.
#[test]
fn every_key_typo_gets_a_suggestion() {
    let schema: serde_json::Value = serde_json::from_str(runbook::playbook::SCHEMA).unwrap();
    let keys_of = |v: &serde_json::Value| -> Vec<String> {
        v.get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut mappings = vec![(String::new(), keys_of(&schema))];
    for (name, def) in schema["$defs"].as_object().unwrap() {
        let keys = keys_of(def);
        if !keys.is_empty() {
            mappings.push((name.clone(), keys));
        }
    }
    mappings.push((
        "api".to_owned(),
        runbook::playbook::action::GENERIC_KEYS
            .iter()
            .map(|k| (*k).to_owned())
            .collect(),
    ));
    assert!(mappings.len() >= 10, "{mappings:?}");
    let mut checked = 0;
    for (def, keys) in &mappings {
        // The context is valid as it stands (with a key it already has).
        let valid: String = context(def)
            .lines()
            .filter(|l| !l.contains("KEY"))
            .map(|l| format!("{l}\n"))
            .collect();
        Playbook::from_str("t.yaml", &valid)
            .unwrap_or_else(|d| panic!("context of `{def}`: {}", d.render()));
        for key in keys {
            for typo in typos(key) {
                if keys.contains(&typo) {
                    continue;
                }
                let text = context(def).replace("KEY", &typo);
                let diags = Playbook::from_str("t.yaml", &text)
                    .err()
                    .unwrap_or_else(|| panic!("`{typo}` accepted in `{def}`"));
                let want = format!("`{key}`");
                assert!(
                    diags
                        .items()
                        .iter()
                        .any(|d| d.message.contains(&format!("`{typo}`"))
                            && d.hint.as_deref().is_some_and(
                                |h| h.starts_with("did you mean") && h.contains(want.as_str())
                            )),
                    "`{typo}` in `{def}` should suggest `{key}`:\n{}",
                    diags.render()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn inflected_keys_get_a_suggestion() {
    for (typo, key, text) in [
        (
            "retries",
            "retry",
            "name: t\nsteps:\n  - id: a\n    sleep: 1s\n    retries: 3\n",
        ),
        (
            "need",
            "needs",
            "name: t\nsteps:\n  - id: a\n    sleep: 1s\n    need: [a]\n",
        ),
        (
            "step",
            "steps",
            "name: t\nstep:\n  - id: a\n    sleep: 1s\n",
        ),
    ] {
        let diags = Playbook::from_str("t.yaml", text).unwrap_err();
        let want = format!("did you mean `{key}`?");
        assert!(
            diags
                .items()
                .iter()
                .any(|d| d.message.contains(&format!("`{typo}`"))
                    && d.hint.as_deref() == Some(want.as_str())),
            "{}",
            diags.render()
        );
    }
}

// ---- durations from params -----------------------------------------------------

/// A playbook whose every duration field reads a param.
const HOLD: &str = "name: hold
params:
  hold: { type: string, default: 20ms }
  poll: { type: string, default: 1s }
  limit: { type: string, default: 2m }
  max_poll: { type: string, default: 5s }
  call_limit: { type: string, default: 1m }
defaults:
  region: cn-hangzhou
steps:
  - id: check
    call: dts.DescribeDtsJobDetail
    with: { DtsJobId: j1 }
    timeout: \"{{params.call_limit}}\"
  - id: pause
    needs: [check]
    sleep: \"{{params.hold}}\"
  - id: settle
    needs: [check]
    wait:
      call: dts.DescribeDtsJobDetail
      with: { DtsJobId: j1 }
      until: { select: Status, in: [Synchronizing] }
      every: \"{{params.poll}}\"
      max_every: \"{{params.max_poll}}\"
      backoff: 2
      timeout: \"{{params.limit}}\"
";

fn hold_playbook() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hold.yaml");
    std::fs::write(&path, HOLD).unwrap();
    (dir, path.display().to_string())
}

fn runbook(args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::cargo::cargo_bin_cmd!("runbook")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn durations_from_params_are_rendered_into_the_plan() {
    let (_dir, pb) = hold_playbook();
    let (code, stdout, stderr) = runbook(&[
        "plan",
        &pb,
        "-p",
        "hold=1m 30s",
        "-p",
        "poll=2s",
        "-p",
        "limit=10m",
        "-p",
        "max_poll=20s",
        "-p",
        "call_limit=45s",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let step = |id: &str| {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(step("pause")["kind"]["millis"], 90_000, "{stdout}");
    let wait = &step("settle")["kind"];
    assert_eq!(wait["every_millis"], 2_000, "{stdout}");
    assert_eq!(wait["max_every_millis"], 20_000, "{stdout}");
    assert_eq!(wait["timeout_millis"], 600_000, "{stdout}");
    assert_eq!(step("check")["timeout_secs"], 45, "{stdout}");
}

/// Each duration field given a bad value through its param: the plan is
/// refused (exit 3), naming the step, the field and the value.
#[test]
fn a_bad_duration_from_a_param_is_refused_when_the_plan_is_built() {
    let (_dir, pb) = hold_playbook();
    for (param, step, field) in [
        ("hold", "pause", "sleep"),
        ("poll", "settle", "every"),
        ("max_poll", "settle", "max_every"),
        ("limit", "settle", "timeout"),
        ("call_limit", "check", "timeout"),
    ] {
        for bad in ["5 parsecs", "30", "-1s", "soon"] {
            let (code, stdout, stderr) = runbook(&["plan", &pb, "-p", &format!("{param}={bad}")]);
            assert_eq!(code, 3, "{param}={bad}: {stdout}{stderr}");
            let want = format!(
                "step `{step}`: `{field}` is `{{{{params.{param}}}}}`, which renders to `{bad}`, not a duration"
            );
            assert!(
                stderr.contains(&want),
                "{param}={bad}: want `{want}` in\n{stderr}"
            );
        }
        if field != "sleep" {
            let (code, _, stderr) = runbook(&["plan", &pb, "-p", &format!("{param}=0s")]);
            assert_eq!(code, 3, "{param}=0s");
            assert!(stderr.contains("it must be longer than 0s"), "{stderr}");
        }
    }
    let (code, _, stderr) = runbook(&["plan", &pb, "-p", "poll=10s", "-p", "max_poll=1s"]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("`max_every` (1s) is shorter than `every` (10s)"),
        "{stderr}"
    );
}

#[test]
fn a_sleep_from_a_param_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sleep.yaml");
    std::fs::write(
        &path,
        "name: s\nparams:\n  hold: { type: string }\nsteps:\n  - id: pause\n    sleep: \"{{params.hold}}\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let (code, stdout, stderr) = runbook(&[
        "run",
        &path.display().to_string(),
        "--sim",
        "-p",
        "hold=10ms",
        "--state-dir",
        &state.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}
