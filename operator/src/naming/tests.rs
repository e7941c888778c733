use super::*;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[test]
fn container_name_is_readable_and_stable() {
    let name = container_name("web-debug");
    assert!(name.starts_with("shellcar-web-debug-"), "{name}");
    // A 64-bit hash of the session name: 16 hex digits.
    let hash = name.trim_start_matches("shellcar-web-debug-");
    assert_eq!(hash.len(), 16, "{name}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    assert_eq!(name, container_name("web-debug"));
    assert!(is_dns_label(&name));
}

#[test]
fn container_names_are_labels_and_do_not_collide() {
    let long = "a".repeat(253);
    let longer_by_one = format!("{}b", "a".repeat(252));
    let cases = [
        "x",
        "web.debug",
        "web-debug",
        long.as_str(),
        longer_by_one.as_str(),
        "a.b.c.d-e",
        "...",
    ];
    let names: Vec<String> = cases.iter().map(|s| container_name(s)).collect();
    for name in &names {
        assert!(is_dns_label(name), "{name} is not a DNS label");
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn field_manager_names_the_session_and_fits() {
    assert_eq!(field_manager("web-debug"), "shellcar.dev/web-debug");
    let long = "s".repeat(253);
    let manager = field_manager(&long);
    assert_eq!(manager.len(), 128, "{manager}");
    assert_ne!(manager, field_manager(&"s".repeat(252)));
    assert!(is_session_manager(&manager));
    assert!(!is_session_manager("kubectl-client-side-apply"));
}

#[test]
fn attach_command_is_exact() {
    assert_eq!(
        attach_command("shop", "web-1", "shellcar-web-debug-0a1b2c3d"),
        "kubectl attach -it -n shop web-1 -c shellcar-web-debug-0a1b2c3d"
    );
}
