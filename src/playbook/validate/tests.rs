use super::*;

#[test]
fn ids() {
    assert!(is_step_id("stop-dts_1"));
    assert!(is_step_id("1st"));
    assert!(!is_step_id("Stop"));
    assert!(!is_step_id("-x"));
    assert!(!is_step_id(""));
}

#[test]
fn wire_values() {
    assert!(wire_value(ApiType::Integer, &[], &Value::from("10000")).is_ok());
    assert!(wire_value(ApiType::Integer, &[], &Value::from(10000)).is_ok());
    let (m, _) = wire_value(ApiType::Integer, &[], &Value::from("abc")).unwrap_err();
    assert_eq!(m, "must be an integer, found the string `abc`");
    let (m, h) = wire_value(
        ApiType::String,
        &["DI_REALTIME"],
        &Value::from("DI_REALTIM"),
    )
    .unwrap_err();
    assert_eq!(m, "must be one of `DI_REALTIME`, found `DI_REALTIM`");
    assert_eq!(h.as_deref(), Some("did you mean `DI_REALTIME`?"));
}

/// The messages `validate` reports for a playbook snippet (after a
/// header with a region).
fn errors(steps: &str) -> Vec<String> {
    let text = format!(
        "name: t\nparams:\n  ids: {{ type: array, items: integer }}\n  n: {{ type: integer }}\ndefaults:\n  region: cn-hangzhou\nsteps:\n{steps}"
    );
    match crate::playbook::Playbook::from_str("t.yaml", &text) {
        Ok(_) => Vec::new(),
        Err(d) => d.items().into_iter().map(|d| d.message.clone()).collect(),
    }
}

#[test]
fn written_out_regions_must_look_like_region_ids() {
    let e = errors(
        "  - id: a\n    region: \" \"\n    sleep: 1s\n  - id: b\n    region: CN_Hangzhou\n    sleep: 1s\n",
    );
    assert_eq!(e, ["invalid region ` `", "invalid region `CN_Hangzhou`"]);
    assert!(errors("  - id: a\n    region: ap-southeast-1\n    sleep: 1s\n").is_empty());
}

#[test]
fn needs_rules() {
    let e = errors("  - id: a\n    needs: [a, b, b]\n    sleep: 1s\n  - id: b\n    sleep: 1s\n");
    assert_eq!(e, ["step `a` needs itself", "step `a` needs `b` twice"]);
    let e =
        errors("  - id: a\n    needs: b\n    sleep: 1s\n  - id: b\n    needs: a\n    sleep: 1s\n");
    assert_eq!(e, ["dependency cycle: a -> b -> a"]);
}

#[test]
fn compensation_rules() {
    let e = errors(concat!(
        "  - id: a\n    sleep: 1s\n    on_failure: { run: [undo] }\n",
        "  - id: undo\n    compensation: true\n    needs: [a]\n    sleep: 1s\n",
        "  - id: spare\n    compensation: true\n    sleep: 1s\n",
        "  - id: b\n    needs: [undo]\n    sleep: 1s\n",
    ));
    assert_eq!(
        e,
        [
            "compensation step `undo` cannot have `needs`",
            "compensation step `spare` is never run",
            "step `b` needs compensation step `undo`",
        ]
    );
    let e = errors(concat!(
        "  - id: a\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: j }\n    on_failure: { run: [undo] }\n",
        "  - id: undo\n    compensation: true\n    call: dts.StopDtsJob\n    with: { DtsJobId: \"{{steps.a.output.DtsJobId}}\" }\n",
    ));
    assert_eq!(e, ["`with.DtsJobId` of step `undo` cannot read `steps.a`"]);
}

#[test]
fn template_scopes() {
    let e = errors(concat!(
        "  - id: a\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: j }\n",
        "  - id: b\n    needs: [a]\n    for_each: \"{{item}}\"\n    sleep: 1s\n",
        "  - id: c\n    needs: [a]\n    region: \"{{steps.a.output.Region}}\"\n    sleep: 1s\n",
        "  - id: d\n    needs: [a]\n    when: \"yes\"\n    sleep: 1s\n",
        "  - id: e\n    needs: [a]\n    for_each: \"ids: {{params.ids}}\"\n    sleep: 1s\n",
        "  - id: f\n    needs: [a]\n    for_each: [1, 2]\n    for_each_concurrency: 0\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: \"{{item}}-{{steps.a.output.X}}-{{this}}\" }\n",
    ));
    assert_eq!(
        e,
        [
            "`item` is not bound in `for_each` of step `b`",
            "`region` of step `c` cannot read `steps.a`",
            "`when` of step `d` is a constant",
            "`for_each` of step `e` must be one `{{...}}` that gives a list",
            "`for_each_concurrency` must be at least 1",
            "invalid template in `with.DtsJobId` of step `f`: `this` is not supported in templates: name the value from `params`, `steps` or `item`",
        ]
    );
}

#[test]
fn generic_api_calls() {
    let ok = concat!(
        "  - id: a\n    call: api\n    with: { product: ecs, version: \"2014-05-26\", action: DescribeInstances, risk: read, params: { PageSize: 10 } }\n",
        "  - id: w\n    needs: [a]\n    wait:\n      call: api\n      with: { product: ecs, version: \"2014-05-26\", action: DescribeInstanceStatus, risk: read }\n      until: { select: TotalCount, equals: 0 }\n",
    );
    assert_eq!(errors(ok), Vec::<String>::new());
    let e = errors(
        "  - id: w\n    wait:\n      call: api\n      with: { product: ecs, version: \"2014-05-26\", action: StopInstance }\n      until: { select: X, exists: true }\n      backoff: 0.5\n      every: 10s\n      max_every: 5s\n",
    );
    assert_eq!(
        e,
        [
            "a wait polls a read-only action, but `ecs.StopInstance` is mutating",
            "wait `backoff` must be at least 1.0, found 0.5",
            "`max_every` (5s) is shorter than `every` (10s)",
        ]
    );
}

#[test]
fn param_typed_templates() {
    let e = errors(
        "  - id: a\n    call: dataworks.StopDIJob\n    with: { DIJobId: \"{{params.ids}}\" }\n",
    );
    assert_eq!(
        e,
        [
            "parameter `DIJobId` of `dataworks.StopDIJob` must be an integer, but param `ids` is declared `type: array`"
        ]
    );
    assert!(
        errors(
            "  - id: a\n    call: dataworks.StopDIJob\n    with: { DIJobId: \"{{params.n}}\" }\n"
        )
        .is_empty()
    );
}
