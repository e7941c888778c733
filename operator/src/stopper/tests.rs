use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::*;

const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const OTHER: &str = "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";

/// A fresh directory laid out as a procfs root: one entry per (pid, cgroup, stat).
fn fake_proc(test: &str, entries: &[(i32, String, &str)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("shellcar-stopper-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for (pid, cgroup, stat) in entries {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        fs::write(dir.join("stat"), stat).unwrap();
    }
    fs::create_dir_all(root.join("self")).unwrap();
    root
}

fn v1(id: &str) -> String {
    format!("12:pids:/kubepods/pod1234/{id}\n11:memory:/kubepods/pod1234/{id}\n0::/\n")
}

#[test]
fn container_ids_come_from_the_status_or_bare() {
    assert_eq!(container_id(&format!("containerd://{ID}")), Some(ID));
    assert_eq!(container_id(ID), Some(ID));
    assert_eq!(container_id(&format!("cri-o://{ID}")), Some(ID));
}

#[test]
fn short_empty_or_odd_ids_are_refused() {
    for id in [
        "",
        "containerd://",
        "abc123",
        "/",
        &ID.to_uppercase(),
        &format!("{}/x", &ID[..40]),
    ] {
        assert_eq!(container_id(id), None, "{id:?}");
    }
}

#[test]
fn cgroup_paths_name_the_container_whole() {
    assert!(in_container(&v1(ID), ID));
    assert!(in_container(&format!("0::/../{ID}\n"), ID));
    assert!(in_container(
        &format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope\n"),
        ID
    ));
    assert!(!in_container(&v1(OTHER), ID));
    // A prefix of another ID, or the ID inside a longer component, is someone else.
    assert!(!in_container(&format!("0::/{ID}0\n"), ID));
    assert!(!in_container(&format!("0::/x{ID}\n"), ID));
    assert!(!in_container("0::/\n", ID));
    assert!(!in_container("", ID));
}

#[test]
fn zombies_are_recognised_whatever_their_name() {
    assert!(is_zombie("42 (sh) Z 1 42 42 0"));
    assert!(is_zombie("42 (a) b) Z 1 42"));
    assert!(!is_zombie("42 (sh) S 1 42 42 0"));
    assert!(!is_zombie("42 (Z) R 1"));
    assert!(!is_zombie(""));
}

#[test]
fn only_live_processes_of_the_container_are_found() {
    let root = fake_proc(
        "find",
        &[
            (7, v1(ID), "7 (sh) S 1"),
            (3, v1(ID), "3 (sleep) S 7"),
            (9, v1(ID), "9 (dead) Z 7"),
            (1, v1(OTHER), "1 (app) S 0"),
            (5, "0::/\n".to_owned(), "5 (pause) S 0"),
        ],
    );
    assert_eq!(processes(&root, ID), vec![3, 7]);
    assert_eq!(processes(&root, OTHER), vec![1]);
    assert_eq!(processes(&root.join("missing"), ID), Vec::<i32>::new());
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn stop_kills_the_containers_processes_and_spares_the_rest() {
    let mut debugger = Command::new("sleep").arg("300").spawn().unwrap();
    let mut target = Command::new("sleep").arg("300").spawn().unwrap();
    let root = fake_proc(
        "stop",
        &[
            (debugger.id() as i32, v1(ID), "x (sleep) S 1"),
            (target.id() as i32, v1(OTHER), "x (sleep) S 1"),
        ],
    );
    // The fake procfs does not see the process die; mark it a zombie once it has.
    let pid = debugger.id();
    let watcher = std::thread::spawn({
        let root = root.clone();
        move || {
            let status = debugger.wait().unwrap();
            fs::write(root.join(pid.to_string()).join("stat"), "x (sleep) Z 1").unwrap();
            status
        }
    });
    let stopped = stop(&root, ID);
    assert!(
        matches!(stopped, Stopped::All { killed } if killed >= 1),
        "{stopped:?}"
    );
    let status = watcher.join().unwrap();
    assert!(!status.success(), "the debugger's process was killed");
    assert_eq!(
        target.try_wait().unwrap(),
        None,
        "the target's process runs on"
    );
    target.kill().unwrap();
    target.wait().unwrap();
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn messages_say_what_is_left() {
    assert_eq!(
        Stopped::All { killed: 3 }.message(ID),
        "stopped 3 processes of container 0f1e2d3c4b5a"
    );
    assert_eq!(
        Stopped::Remaining {
            pids: vec![4, 5],
            denied: true
        }
        .message(ID),
        "processes [4, 5] of container 0f1e2d3c4b5a are still running (not permitted to signal them)"
    );
}
