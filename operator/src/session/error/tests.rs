use super::*;

fn api_error(code: u16) -> Error {
    Error::Apply {
        kind: TargetKind::Deployment,
        name: "web".to_owned(),
        source: kube::Error::Api(Box::new(
            kube::core::Status::failure("env[0].name: Invalid value: \"1 BAD\"", "Invalid")
                .with_code(code),
        )),
    }
}

#[test]
fn only_refusals_retrying_cannot_fix_are_rejections() {
    assert_eq!(
        api_error(422).rejection().as_deref(),
        Some("applying the debugger to Deployment web: env[0].name: Invalid value: \"1 BAD\"")
    );
    assert!(api_error(403).rejection().is_some());
    for transient in [404, 409, 429, 500, 503] {
        assert_eq!(api_error(transient).rejection(), None, "{transient}");
    }
    assert_eq!(Error::NoUid.rejection(), None);
}
