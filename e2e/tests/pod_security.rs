//! Pod Security Admission is the oracle of shellcar's Pod Security preflight: for every
//! level a namespace can enforce and every debugger profile, shellcar's webhook admits an
//! Ephemeral session exactly when the API server's Pod Security admission accepts its
//! debugger.
//!
//! Ephemeral mode shows Pod Security's verdict on the debugger most directly: the
//! ephemeral container is checked by Pod Security admission when it is added through
//! `pods/ephemeralcontainers`, and refused there, whereas a Sidecar debugger is a
//! workload's template change that Pod Security only warns about (its pods are refused
//! later, to the ReplicaSet). The target pod is admitted by every level (see
//! [`restricted_pod`]), so the verdict is on the debugger alone.

use anyhow::{Context as _, Result, bail};
use futures::future::try_join_all;
use kube::api::PostParams;
use serde_json::json;
use shellcar::crd::{Mode, Profile, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::attack;
use shellcar_e2e::psa::{
    APP_CONTAINER, ENFORCE_LABEL, LEVELS, PROFILES, Verdict, dry_run_ephemeral, restricted_pod,
    security_context, table,
};
use shellcar_e2e::session::session;

/// Long enough never to run out during the test.
const TTL: &str = "30m";

/// What shellcar's webhook says when its preflight refuses a profile (podsecurity.rs's
/// `Forbidden`), as opposed to relaying the API server's refusal of its dry run.
const PREFLIGHT_REFUSAL: &str = "enforces Pod Security level";

/// The two verdicts on one profile in one namespace.
struct Cell {
    profile: Profile,
    shellcar: Verdict,
    psa: Verdict,
}

/// Lower-case profile name, for object names.
fn slug(profile: Profile) -> String {
    format!("{profile:?}").to_lowercase()
}

/// Both verdicts on every profile in a fresh namespace that enforces `level`, where a
/// DebugPolicy allows every profile (NetAdmin and SysAdmin need one).
async fn judge(level: &str) -> Result<Vec<Cell>> {
    let f = Fixture::new(&format!("psa-{level}")).await?;
    f.label_namespace(ENFORCE_LABEL, level).await?;
    let profiles: Vec<String> = PROFILES.iter().map(|p| format!("{p:?}")).collect();
    let policy = f
        .policy("all-profiles", json!({"profiles": profiles}))
        .await?;
    policy.wait_ready("True").await?;
    // A target pod per profile: ephemeral containers stay in a pod for good, and each
    // verdict must be on a pod that carries no other debugger.
    try_join_all(PROFILES.iter().map(|p| {
        let f = &f;
        async move {
            let pod = restricted_pod(&format!("t-{}", slug(*p)))?;
            f.workloads.create_pod(&pod).await
        }
    }))
    .await?;

    let mut cells = Vec::new();
    for profile in PROFILES {
        let target = format!("t-{}", slug(profile));
        let name = format!("s-{}", slug(profile));
        // Pod Security's verdict first, on the pristine pod.
        let psa = dry_run_ephemeral(
            &f.workloads.pods,
            &target,
            APP_CONTAINER,
            "psa-probe",
            profile,
        )
        .await?;

        let mut request = session(&name, TargetKind::Pod, &target, TTL)?;
        request.spec.mode = Mode::Ephemeral;
        request.spec.debugger.profile = profile;
        let shellcar = match f
            .sessions
            .api
            .create(&PostParams::default(), &request)
            .await
        {
            Ok(_) => Verdict::Admitted,
            Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                if !e.message.contains("Pod Security") && !e.message.contains("PodSecurity") {
                    bail!(
                        "{level}/{profile:?}: shellcar refused the session for another \
                         reason than Pod Security: {}",
                        e.message
                    );
                }
                Verdict::Refused(e.message.clone())
            }
            Err(e) => return Err(e).context(format!("creating session {name}")),
        };

        if shellcar.admitted() {
            // The API server took the real debugger, with the profile's securityContext
            // (what the dry run above sent), and it runs.
            f.sessions.wait_active(&name).await?;
            let container = naming::container_name(&name);
            let pod = f.workloads.pods.get(&target).await?;
            let debugger = pod
                .spec
                .as_ref()
                .and_then(|s| s.ephemeral_containers.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == container))
                .with_context(|| format!("{level}/{profile:?}: no debugger in pod {target}"))?;
            assert_eq!(
                serde_json::to_value(&debugger.security_context)?,
                security_context(profile),
                "{level}/{profile:?}: the debugger's securityContext is not the profile's, \
                 so the dry run judged another container than the one shellcar adds"
            );
        }
        cells.push(Cell {
            profile,
            shellcar,
            psa,
        });
    }
    Ok(cells)
}

#[tokio::test]
async fn shellcar_admits_a_debugger_exactly_when_pod_security_admission_does() -> Result<()> {
    let judged = try_join_all(LEVELS.iter().map(|level| judge(level))).await?;

    let rows: Vec<(&str, Vec<(Profile, String)>)> = LEVELS
        .iter()
        .zip(&judged)
        .map(|(level, cells)| {
            let row = cells
                .iter()
                .map(|c| (c.profile, format!("{}/{}", c.shellcar, c.psa)))
                .collect();
            (*level, row)
        })
        .collect();
    let shown = table(&rows);
    println!("shellcar's verdict at create / Pod Security admission's (dry run):\n{shown}");

    for (level, cells) in LEVELS.iter().zip(&judged) {
        for cell in cells {
            let profile = cell.profile;
            // An attack where Pod Security admission refuses the debugger: shellcar must
            // refuse it too, at create, in its own words.
            if !cell.psa.admitted() {
                let (observed, own_words) = match &cell.shellcar {
                    Verdict::Admitted => ("admitted", false),
                    Verdict::Refused(message) => (
                        message.as_str(),
                        message.contains(PREFLIGHT_REFUSAL)
                            && message.contains(&format!("{profile:?}")),
                    ),
                };
                attack::record(
                    &format!(
                        "Ephemeral debugger with profile {profile:?} in a namespace enforcing Pod Security {level}"
                    ),
                    "refused at create by shellcar's preflight, as Pod Security admission refuses it",
                    observed,
                    own_words,
                );
            }
            assert_eq!(
                cell.shellcar.admitted(),
                cell.psa.admitted(),
                "{level}/{profile:?}: shellcar {:?}, Pod Security admission {:?}\n{shown}",
                cell.shellcar,
                cell.psa
            );
            // A refusal is shellcar's own sentence, not the API server's refusal of the
            // webhook's dry run passed on.
            if let Verdict::Refused(message) = &cell.shellcar {
                assert!(
                    message.contains(PREFLIGHT_REFUSAL)
                        && message.contains(&format!("{profile:?}")),
                    "{level}/{profile:?}: the refusal must be shellcar's preflight, naming the \
                     level and the profile: {message}"
                );
            }
        }
    }
    Ok(())
}
