//! The key of the admission stamp ([`crate::rules::stamp`]), kept in a Secret of the
//! operator's namespace that only the operator reads. The first replica to start creates
//! it with random bytes; every replica, and every later start, reads the same one.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::rules::stamp::{KEY_LEN, Key};

/// The Secret's data key that holds the key bytes.
const DATA_KEY: &str = "key";

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or creating Secret {namespace}/{name}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "Secret {namespace}/{name} has no {DATA_KEY} of {KEY_LEN} bytes: delete it and restart the operator, which makes a new key (sessions stamped with the old one are then refused)"
    )]
    Malformed { namespace: String, name: String },
    #[error("drawing random bytes for a new key")]
    Random(#[from] getrandom::Error),
}

/// The key in Secret `name` of `namespace`, created if there is none.
///
/// Safe with several replicas: a create that finds the Secret already there reads what
/// the other replica wrote.
pub async fn ensure(client: &Client, namespace: &str, name: &str) -> Result<Key, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |source| Error::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    };
    let secret = match api.get_opt(name).await.map_err(err)? {
        Some(secret) => secret,
        None => {
            let mut bytes = [0u8; KEY_LEN];
            getrandom::fill(&mut bytes)?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    DATA_KEY.to_owned(),
                    ByteString(bytes.to_vec()),
                )])),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(created) => {
                    tracing::info!(secret = name, namespace, "created the admission stamp key");
                    created
                }
                // Another replica was first: use its key.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    api.get(name).await.map_err(err)?
                }
                Err(source) => return Err(err(source)),
            }
        }
    };
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(DATA_KEY))
        .and_then(|bytes| Key::from_bytes(&bytes.0))
        .ok_or_else(|| Error::Malformed {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}
