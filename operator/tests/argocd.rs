//! config/argocd/ as Argo CD uses it: health.lua runs in a real Lua 5.1 (Argo CD's
//! gopher-lua is a Lua 5.1) on every case of Argo CD's own test layout
//! (resource_customizations/<group>/<kind>/health_test.yaml), with only the libraries Argo
//! CD opens for a script from argocd-cm; the argocd-cm patch carries the same script; the
//! README shows the ignoreDifferences of the Application snippet.
#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::PathBuf;

use mlua::{Lua, LuaOptions, LuaSerdeExt as _, StdLib};
use serde::Deserialize;
use serde_json::Value;
use shellcar::crd::DebugSession;

/// Argo CD's layout for the health check of `debug.shellcar.dev/DebugSession`.
const CUSTOMIZATION: &str = "config/argocd/resource_customizations/debug.shellcar.dev/DebugSession";

/// The argocd-cm key of a health check: `resource.customizations.health.<group>_<kind>`.
const HEALTH_KEY: &str = "resource.customizations.health.debug.shellcar.dev_DebugSession";

/// The health statuses Argo CD accepts from a script; anything else becomes Unknown.
const VALID: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

#[derive(Debug, Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Health,
    input_path: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
struct Health {
    status: String,
    message: String,
}

/// Runs `script` as Argo CD runs a health check from argocd-cm: a fresh Lua state with the
/// base and table libraries (Argo CD adds `package` and a reduced `os`, which a health check
/// has no use for, and no `string`), the object as the global `obj` (JSON null as nil, arrays
/// as plain tables), and the table the chunk returns read as `{status, message}`.
fn health(script: &str, object: &Value) -> Result<Health, String> {
    let lua = Lua::new_with(StdLib::TABLE, LuaOptions::default()).map_err(|e| e.to_string())?;
    let options = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let obj = lua
        .to_value_with(object, options)
        .map_err(|e| e.to_string())?;
    lua.globals().set("obj", obj).map_err(|e| e.to_string())?;
    let hs: mlua::Table = lua
        .load(script)
        .set_name("health.lua")
        .call(())
        .map_err(|e| e.to_string())?;
    let status: String = hs.get("status").map_err(|e| e.to_string())?;
    let message: Option<String> = hs.get("message").map_err(|e| e.to_string())?;
    if !VALID.contains(&status.as_str()) {
        return Err(format!(
            "status {status:?}: Argo CD shows Unknown, \"Lua returned an invalid health status\""
        ));
    }
    Ok(Health {
        status,
        message: message.unwrap_or_default(),
    })
}

fn script() -> String {
    read(&format!("{CUSTOMIZATION}/health.lua"))
}

fn cases() -> Vec<HealthTest> {
    let path = format!("{CUSTOMIZATION}/health_test.yaml");
    let tests: HealthTests =
        serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    tests.tests
}

fn fixture(input_path: &str) -> Value {
    yaml(&format!("{CUSTOMIZATION}/{input_path}"))
}

#[test]
fn every_case_of_health_test_yaml_gets_its_health() {
    let script = script();
    let cases = cases();
    let mut wrong = vec![];
    for case in &cases {
        let got = health(&script, &fixture(&case.input_path));
        if got.as_ref() != Ok(&case.health_status) {
            wrong.push(format!(
                "{}:\n  want {:?}\n  got  {got:?}",
                case.input_path, case.health_status
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // Every fixture is a case, and the cases reach every health a session can have.
    let used: BTreeSet<String> = cases.iter().map(|c| c.input_path.clone()).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo(&format!("{CUSTOMIZATION}/testdata")))
        .unwrap()
        .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(used, on_disk, "fixtures and cases differ");
    let statuses: BTreeSet<&str> = cases
        .iter()
        .map(|c| c.health_status.status.as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Degraded", "Healthy", "Progressing", "Suspended"])
    );
}

#[test]
fn fixtures_are_debug_sessions_as_the_operator_writes_them() {
    // Each fixture reads as a DebugSession, and nothing of its spec or status is lost on
    // the way: no misspelt field, no value the CRD would not hold.
    for case in cases() {
        let object = fixture(&case.input_path);
        let session: DebugSession = serde_json::from_value(object.clone())
            .unwrap_or_else(|e| panic!("{}: not a DebugSession: {e}", case.input_path));
        let again = serde_json::to_value(&session).unwrap();
        for part in ["spec", "status"] {
            assert_eq!(
                again.get(part),
                object.get(part),
                "{}: {part} does not survive a round trip through the CRD types",
                case.input_path
            );
        }
    }
}

/// `session::pods::FAILING_REASONS` and `session::status::REPLICA_FAILURE` of the operator (not
/// public): the Ready reasons of a debugger that will not start without someone's help.
const FAILING: [&str; 10] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
    "Unschedulable",
    "ReplicaFailure",
];

#[test]
fn a_debugger_that_cannot_start_is_degraded_one_on_its_way_progressing() {
    let script = script();
    let base = fixture("testdata/degraded_image_pull_backoff.yaml");
    let with_reason = |reason: &str| {
        let mut object = base.clone();
        let conditions = object["status"]["conditions"].as_array_mut().unwrap();
        for c in conditions.iter_mut().filter(|c| c["type"] != "Expired") {
            c["reason"] = reason.into();
        }
        health(&script, &object).unwrap().status
    };
    for reason in FAILING {
        assert_eq!(with_reason(reason), "Degraded", "Ready reason {reason}");
    }
    for reason in ["WaitingForPods", "NoReplicas", "ContainerCreating"] {
        assert_eq!(with_reason(reason), "Progressing", "Ready reason {reason}");
    }
}

#[test]
fn a_session_without_metadata_generation_or_conditions_still_gets_a_health() {
    // Argo CD shows Unknown with the Lua error when a script fails; a partial object (an
    // older operator's status, a hand-written one) must not make it fail.
    let script = script();
    let object = serde_json::json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {"name": "web-debug"},
        "status": {"phase": "Injecting"},
    });
    assert_eq!(
        health(&script, &object),
        Ok(Health {
            status: "Progressing".into(),
            message: "DebugSession is Injecting".into()
        })
    );
}

#[test]
fn the_argocd_cm_patch_carries_health_lua_byte_for_byte() {
    let patch = yaml("config/argocd/argocd-cm-patch.yaml");
    assert_eq!(
        (&patch["kind"], &patch["metadata"]["name"]),
        (&Value::from("ConfigMap"), &Value::from("argocd-cm"))
    );
    let data = patch["data"].as_object().unwrap();
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(keys, [HEALTH_KEY]);
    assert!(
        data[HEALTH_KEY] == read("config/argocd/health.lua"),
        "{HEALTH_KEY} in config/argocd/argocd-cm-patch.yaml is not config/argocd/health.lua"
    );
    // The copy in Argo CD's layout is the same file (a link), not a second script.
    assert_eq!(script(), read("config/argocd/health.lua"));
}

/// The `jqPathExpressions` of each `ignoreDifferences` entry of `doc` (an Application),
/// by kind.
fn ignore_differences(doc: &Value) -> Vec<(String, Vec<String>)> {
    doc["spec"]["ignoreDifferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let exprs = e["jqPathExpressions"].as_array().unwrap();
            (
                e["kind"].as_str().unwrap().to_owned(),
                exprs
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn the_readme_shows_the_ignore_differences_of_the_application_file() {
    let file = ignore_differences(&yaml("config/argocd/application-ignore-differences.yaml"));
    let kinds: Vec<&str> = file.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"],
        "every kind that Sidecar mode changes"
    );
    for (kind, exprs) in &file {
        assert_eq!(
            exprs, &file[0].1,
            "{kind} ignores other fields than Deployment"
        );
    }

    let readme = read("README.md");
    let section = readme
        .split("\n## Argo CD and Flux\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("README has no section \"## Argo CD and Flux\""));
    let shown: Vec<Value> = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("\n```").next())
        .filter(|block| block.contains("ignoreDifferences:"))
        .map(|block| serde_yaml::from_str(block).unwrap())
        .collect();
    assert_eq!(
        shown.len(),
        1,
        "one ignoreDifferences example in the README"
    );
    let shown = ignore_differences(&shown[0]);
    assert_eq!(
        shown,
        file[..1],
        "the README and config/argocd/application-ignore-differences.yaml differ"
    );
}
