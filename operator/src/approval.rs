//! Whether a session may start, given the approval its policy asks for: the gate every
//! reconcile passes before it changes anything. Pure.
//!
//! The decision itself is recorded in `spec.approval` by the admission webhook
//! ([`crate::admission`]), which checks the approver; here it is only read.

use jiff::Timestamp;

use crate::crd::{Approval, Decision};
use crate::policy::Admitted;
use crate::ttl;
use crate::validate::Invalid;

/// What the approval rule says about a session now.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// It may run; its ttl counts from `start` (its approval, or its creation).
    Open { start: Timestamp },
    /// It waits for a decision until `due`, changing nothing.
    Awaiting { due: Timestamp },
    /// It was rejected, or nobody decided in time.
    Closed(Invalid),
}

/// The gate for a session created at `created`, admitted by `admitted`, with the decision
/// `approval` (if any), at `now`.
///
/// A rejection closes the gate whatever the policy says now; an approval opens it and its
/// time starts the ttl, even if the policy no longer asks for one.
pub fn gate(
    admitted: &Admitted,
    approval: Option<&Approval>,
    created: Timestamp,
    now: Timestamp,
) -> Gate {
    match (approval, admitted.approval) {
        (Some(a), _) if a.decision == Decision::Rejected => {
            Gate::Closed(Invalid::ApprovalRejected {
                approver: a.approver.clone(),
                reason: a.reason.clone(),
            })
        }
        (Some(a), _) => Gate::Open { start: a.time.0 },
        (None, None) => Gate::Open { start: created },
        (None, Some(deadline)) => {
            let due = ttl::expires_at(created, deadline);
            if ttl::remaining(now, due).is_some() {
                Gate::Awaiting { due }
            } else {
                Gate::Closed(Invalid::NotApproved {
                    policy: admitted.policy.clone(),
                    deadline: ttl::format(deadline),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn admitted(deadline: Option<u64>) -> Admitted {
        Admitted {
            policy: "prod".to_owned(),
            approval: deadline.map(Duration::from_secs),
        }
    }

    fn decided(decision: Decision, time: &str) -> Approval {
        Approval {
            decision,
            approver: "ops-lead".to_owned(),
            reason: "incident 42".to_owned(),
            time: Time(at(time)),
        }
    }

    const CREATED: &str = "2026-11-24T10:00:00Z";

    #[test]
    fn without_a_rule_the_ttl_counts_from_creation() {
        assert_eq!(
            gate(
                &admitted(None),
                None,
                at(CREATED),
                at("2026-11-24T10:05:00Z")
            ),
            Gate::Open { start: at(CREATED) }
        );
    }

    #[test]
    fn a_session_waits_until_its_deadline_then_fails() {
        let rule = admitted(Some(3600));
        assert_eq!(
            gate(&rule, None, at(CREATED), at("2026-11-24T10:59:59Z")),
            Gate::Awaiting {
                due: at("2026-11-24T11:00:00Z")
            }
        );
        let Gate::Closed(late) = gate(&rule, None, at(CREATED), at("2026-11-24T11:00:00Z")) else {
            panic!("still open at the deadline");
        };
        assert_eq!(late.reason(), "NotApproved");
        assert_eq!(
            late.to_string(),
            "nobody approved the session within 1h, the approval deadline of policy prod"
        );
    }

    #[test]
    fn an_approval_starts_the_ttl_and_a_rejection_closes_for_good() {
        let rule = admitted(Some(3600));
        let approved = decided(Decision::Approved, "2026-11-24T10:20:00Z");
        assert_eq!(
            gate(
                &rule,
                Some(&approved),
                at(CREATED),
                at("2026-11-24T12:00:00Z")
            ),
            Gate::Open {
                start: at("2026-11-24T10:20:00Z")
            }
        );
        // The policy changed and no longer asks: the approval still starts the ttl.
        assert_eq!(
            gate(&admitted(None), Some(&approved), at(CREATED), at(CREATED)),
            Gate::Open {
                start: at("2026-11-24T10:20:00Z")
            }
        );
        let rejected = decided(Decision::Rejected, "2026-11-24T10:20:00Z");
        for rule in [admitted(Some(3600)), admitted(None)] {
            let Gate::Closed(refusal) = gate(&rule, Some(&rejected), at(CREATED), at(CREATED))
            else {
                panic!("a rejected session may not run");
            };
            assert_eq!(refusal.reason(), "ApprovalRejected");
            assert_eq!(
                refusal.to_string(),
                "ops-lead rejected the session: incident 42"
            );
        }
    }
}
