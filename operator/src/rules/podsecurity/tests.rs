use super::*;

fn labels(value: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("team".to_owned(), "shop".to_owned())]);
    if let Some(value) = value {
        labels.insert(ENFORCE_LABEL.to_owned(), value.to_owned());
    }
    labels
}

#[test]
fn every_level_against_every_profile() {
    use Profile::*;
    let table = [
        (
            "privileged",
            [General, Baseline, Restricted, NetAdmin, SysAdmin].as_slice(),
        ),
        ("baseline", [Baseline, Restricted].as_slice()),
        ("restricted", [Restricted].as_slice()),
    ];
    for (value, allowed) in table {
        let labels = labels(Some(value));
        for profile in PROFILES {
            let verdict = check("shop", &labels, profile);
            assert_eq!(
                verdict.is_ok(),
                allowed.contains(&profile),
                "{value} {profile:?}: {verdict:?}"
            );
        }
        assert_eq!(fitting(enforced(&labels)), allowed, "{value}");
    }
}

#[test]
fn an_absent_label_allows_everything() {
    assert_eq!(enforced(&labels(None)), Level::Privileged);
    assert_eq!(enforced(&BTreeMap::new()), Level::Privileged);
    assert_eq!(check("shop", &labels(None), Profile::SysAdmin), Ok(()));
}

#[test]
fn an_invalid_value_is_read_as_restricted() {
    for value in ["Baseline", "", "none", " baseline"] {
        assert_eq!(
            enforced(&labels(Some(value))),
            Level::Restricted,
            "{value:?}"
        );
    }
    let refused = check("shop", &labels(Some("Baseline")), Profile::Baseline);
    assert_eq!(
        refused.unwrap_err().to_string(),
        "namespace shop enforces Pod Security level \"restricted\" (label \
             pod-security.kubernetes.io/enforce is \"Baseline\", not a level, which Kubernetes \
             reads as restricted), which forbids profile Baseline: it does not set \
             allowPrivilegeEscalation: false, it does not set runAsNonRoot: true, it does not \
             drop capability ALL, it does not set seccompProfile RuntimeDefault or Localhost; \
             profiles that fit: Restricted"
    );
}

#[test]
fn the_message_names_the_rule_and_the_profiles_that_fit() {
    let baseline = labels(Some("baseline"));
    let message = |profile| check("shop", &baseline, profile).unwrap_err().to_string();
    assert_eq!(
        message(Profile::General),
        "namespace shop enforces Pod Security level \"baseline\" (label \
             pod-security.kubernetes.io/enforce), which forbids profile General: it adds \
             capability SYS_PTRACE; profiles that fit: Baseline, Restricted"
    );
    assert!(
        message(Profile::NetAdmin).contains(
            "forbids profile NetAdmin: it adds capabilities NET_ADMIN, NET_RAW; profiles"
        ),
        "{}",
        message(Profile::NetAdmin)
    );
    assert!(
        message(Profile::SysAdmin).contains("forbids profile SysAdmin: it runs privileged;"),
        "{}",
        message(Profile::SysAdmin)
    );
}

#[test]
fn restricted_names_each_missing_setting_and_capabilities_once() {
    let refused = check("shop", &labels(Some("restricted")), Profile::General).unwrap_err();
    assert_eq!(refused.level, Level::Restricted);
    assert_eq!(refused.invalid_value, None);
    assert_eq!(
        refused.reasons,
        [
            "it adds capability SYS_PTRACE",
            "it does not set allowPrivilegeEscalation: false",
            "it does not set runAsNonRoot: true",
            "it does not drop capability ALL",
            "it does not set seccompProfile RuntimeDefault or Localhost",
        ]
    );
}

#[test]
fn level_displays_as_the_label_writes_it() {
    let shown: Vec<String> = [Level::Privileged, Level::Baseline, Level::Restricted]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["privileged", "baseline", "restricted"]);
    for level in shown {
        assert_eq!(enforced(&labels(Some(&level))).to_string(), level);
    }
}
