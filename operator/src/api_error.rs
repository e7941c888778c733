//! How the API server's answer to a failed request is read: one classification, shared by
//! the reconciler, the webhook and the plugin. Each caller decides at the call which
//! classes it treats as a refusal to report rather than a failure to retry.

/// What kind of failure a request met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// The API server judged the request and refused it: invalid (400, 422), forbidden
    /// (403), or another 4xx that retrying cannot fix. Carries its message.
    Refused { code: u16, message: String },
    /// The object is not there (404).
    NotFound,
    /// Someone else holds the object or a field of it (409), with the message.
    Conflict(String),
    /// The API server asked to slow down (429).
    Throttled,
    /// No answer from the API server's judgment: a 5xx, a transport or a client error.
    /// Retrying may help.
    Unavailable,
}

impl ApiError {
    /// The class of `error`.
    pub fn of(error: &kube::Error) -> Self {
        let kube::Error::Api(status) = error else {
            return ApiError::Unavailable;
        };
        match status.code {
            404 => ApiError::NotFound,
            409 => ApiError::Conflict(status.message.clone()),
            429 => ApiError::Throttled,
            code @ 400..=499 => ApiError::Refused {
                code,
                message: status.message.clone(),
            },
            _ => ApiError::Unavailable,
        }
    }

    /// The API server's message for a request it judged and refused, or a conflict.
    pub fn message(&self) -> Option<&str> {
        match self {
            ApiError::Refused { message, .. } | ApiError::Conflict(message) => Some(message),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
