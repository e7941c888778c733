use super::*;

fn api(code: u16, message: &str) -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure(message, "Reason").with_code(code),
    ))
}

#[test]
fn every_answer_has_one_class() {
    assert_eq!(
        ApiError::of(&api(422, "bad")),
        ApiError::Refused {
            code: 422,
            message: "bad".to_owned()
        }
    );
    assert_eq!(
        ApiError::of(&api(403, "no")),
        ApiError::Refused {
            code: 403,
            message: "no".to_owned()
        }
    );
    assert_eq!(ApiError::of(&api(404, "gone")), ApiError::NotFound);
    assert_eq!(
        ApiError::of(&api(409, "held")),
        ApiError::Conflict("held".to_owned())
    );
    assert_eq!(ApiError::of(&api(429, "slow")), ApiError::Throttled);
    assert_eq!(ApiError::of(&api(503, "down")), ApiError::Unavailable);
    assert_eq!(ApiError::of(&api(409, "held")).message(), Some("held"));
    assert_eq!(ApiError::of(&api(404, "gone")).message(), None);
}
