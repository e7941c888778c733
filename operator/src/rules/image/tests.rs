use super::*;

#[test]
fn docker_hub_names_are_one_image_however_written() {
    for image in [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
    ] {
        assert!(allowed(image, "busybox"), "{image}");
        assert!(allowed(image, "docker.io/library/busybox"), "{image}");
        assert_eq!(
            canonical(image).as_deref(),
            Some("docker.io/library/busybox:latest")
        );
    }
}

#[test]
fn another_port_or_host_is_another_registry() {
    assert!(allowed("registry.example/x", "registry.example"));
    assert!(allowed("REGISTRY.example/x:1", "registry.example"));
    assert!(!allowed("registry.example:5000/x", "registry.example"));
    assert!(allowed("registry.example:5000/x", "registry.example:5000/"));
    assert!(allowed("localhost:5000/x", "localhost:5000/"));
    assert!(!allowed("localhost:5001/x", "localhost:5000/"));
    assert!(!allowed("registry.example.evil.io/x", "registry.example"));
    assert!(!allowed("registry.examplex/x", "registry.example"));
    assert!(!allowed("evil/registry.example/x", "registry.example"));
    // A name without a dot is a Docker Hub repository, not a registry.
    assert!(!allowed("registry.example/x", "docker.io"));
}

#[test]
fn paths_match_on_whole_components() {
    assert!(allowed(
        "registry.example/tools/sh:1",
        "registry.example/tools/"
    ));
    assert!(allowed(
        "registry.example/tools/sh:1",
        "registry.example/tools"
    ));
    assert!(allowed("registry.example/tools", "registry.example/tools"));
    assert!(!allowed(
        "registry.example/tools",
        "registry.example/tools/"
    ));
    assert!(!allowed(
        "registry.example/toolsx/sh",
        "registry.example/tools"
    ));
    assert!(!allowed("busybox-evil", "busybox"));
}

#[test]
fn a_pinned_entry_admits_only_its_tag_or_digest() {
    let digest = format!("sha256:{}", "a".repeat(64));
    assert!(allowed("busybox:1.36", "busybox:1.36"));
    assert!(!allowed("busybox:1.37", "busybox:1.36"));
    assert!(!allowed("busybox", "busybox:1.36"));
    assert!(allowed(
        &format!("busybox@{digest}"),
        &format!("busybox@{digest}")
    ));
    assert!(!allowed("busybox:1.36", &format!("busybox@{digest}")));
    // Unpinned: any tag or digest.
    assert!(allowed(&format!("busybox:1.36@{digest}"), "busybox"));
}

#[test]
fn what_is_no_reference_admits_nothing() {
    assert!(!allowed("Not An Image", "busybox"));
    assert!(!allowed("busybox", ""));
    assert_eq!(canonical("Not An Image"), None);
}
