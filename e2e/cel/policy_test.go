package cel

import (
	"maps"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
)

// The policy's validations, by index, as the refusals below name them.
const (
	vRequesterIsCaller = iota
	vNotCreatedApproved
	vRequesterFixed
	vApprovalOnce
	vFinalizer
	vManage
	validationCount
)

const (
	finalizer = "debug.shellcar.dev/teardown"
	operator  = "system:serviceaccount:shellcar-system:shellcar"
	nsGC      = "system:serviceaccount:kube-system:namespace-controller"
	kcm       = "system:kube-controller-manager"

	msgRequesterDev = "ValidatingAdmissionPolicy 'sessions' with binding 'sessions' denied request: " +
		"spec.requester must be the user who creates the session (dev, with their groups): " +
		"shellcar's mutating webhook stamps it; is its MutatingWebhookConfiguration missing?"
	msgCreatedApproved = "ValidatingAdmissionPolicy 'sessions' with binding 'sessions' denied request: " +
		"a session cannot be created approved: an approver records spec.approval later, through shellcar's webhook"
	msgRequesterFixed = "ValidatingAdmissionPolicy 'sessions' with binding 'sessions' denied request: " +
		"spec.requester cannot change"
	msgApprovalOnce = "ValidatingAdmissionPolicy 'sessions' with binding 'sessions' denied request: " +
		"spec.approval is recorded once, by shellcar's webhook, naming the approver who sent it (never the requester), and never changes after"
)

func msgFinalizer(caller string) string {
	return "ValidatingAdmissionPolicy 'sessions' with binding 'sessions' denied request: " +
		"only shellcar's operator removes the finalizer " + finalizer +
		", once the debugger is gone: delete the session and it will (" + caller +
		" lacks the verb finalize on debugsessions)"
}

func msgManage(caller, what string) string {
	return "ValidatingAdmissionPolicy 'sessions' with binding 'sessions' denied request: " +
		caller + " may not " + what + " a session requested by dev: " +
		"that takes the verb manage on debugsessions (ClusterRole shellcar-manager)"
}

// The RBAC of the cluster the cases run in: the operator holds finalize (config/rbac),
// a namespace admin holds manage (shellcar-manager aggregates into admin), a cluster admin
// holds every verb.
var rbac = map[string][]string{
	operator:        {"get", "list", "watch", "update", "patch", "finalize"},
	"ns-admin":      {"get", "update", "patch", "delete", "manage"},
	"cluster-admin": {"get", "update", "patch", "delete", "manage", "finalize", "approve"},
	"dev":           {"get", "create", "update", "patch", "delete"},
	"ops":           {"get", "update", "patch", "delete", "approve"},
}

func dev() *user.DefaultInfo {
	return &user.DefaultInfo{
		Name:   "dev",
		UID:    "0b7d4a56-dev",
		Groups: []string{"dev", "system:authenticated"},
		Extra:  map[string][]string{"scopes.example/tier": {"prod", "staging"}},
	}
}

func caller(name string) *user.DefaultInfo {
	return &user.DefaultInfo{Name: name, UID: name + "-uid", Groups: []string{"system:authenticated"}}
}

// requesterOf is spec.requester as the mutating webhook stamps it for u (empty fields
// left out, as the operator serializes them).
func requesterOf(u *user.DefaultInfo) map[string]any {
	r := map[string]any{"username": u.Name}
	if u.UID != "" {
		r["uid"] = u.UID
	}
	if len(u.Groups) > 0 {
		groups := make([]any, len(u.Groups))
		for i, g := range u.Groups {
			groups[i] = g
		}
		r["groups"] = groups
	}
	if len(u.Extra) > 0 {
		extra := map[string]any{}
		for k, vs := range u.Extra {
			values := make([]any, len(vs))
			for i, v := range vs {
				values[i] = v
			}
			extra[k] = values
		}
		r["extra"] = extra
	}
	return r
}

func approval(approver string) map[string]any {
	return map[string]any{"approver": approver, "decision": "Approved", "time": "2026-11-23T12:05:00Z", "reason": "incident 4711"}
}

// session is a DebugSession in namespace shop; edit changes its copy of the fields. It
// always has a ttl: the CRD's schema defaults it (1h) before admission, so the policy may
// compare it without has() (an absent ttl would make the expression error, and refuse).
func session(edit func(spec, meta map[string]any)) map[string]any {
	meta := map[string]any{"name": "web-debug", "namespace": "shop", "uid": "5e55-10n", "finalizers": []any{finalizer}}
	spec := map[string]any{
		"target":    map[string]any{"kind": "Deployment", "name": "web"},
		"mode":      "Sidecar",
		"ttl":       "30m",
		"requester": requesterOf(dev()),
	}
	if edit != nil {
		edit(spec, meta)
	}
	return map[string]any{"apiVersion": "debug.shellcar.dev/v1alpha1", "kind": "DebugSession", "metadata": meta, "spec": spec}
}

type testCase struct {
	name    string
	req     request
	message string // "" when admitted
	denied  []int  // the validations that refuse, all of them
}

func run(t *testing.T, cases []testCase) {
	c := load(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.evaluate(t, rbac, tc.req)
			if got.message != tc.message {
				t.Errorf("message:\n got  %q\n want %q", got.message, tc.message)
			}
			if !slices.Equal(got.denied, tc.denied) {
				t.Errorf("refused by validations %v, want %v", got.denied, tc.denied)
			}
			for _, i := range got.denied {
				refused[i] = true
			}
		})
	}
}

// refused records which validations some case saw refuse; TestEveryValidationRefuses
// checks that none is left untested.
var refused = map[int]bool{}

func TestPolicyShape(t *testing.T) {
	policy, binding := loadPolicy(t)
	if policy.Name != "sessions" || binding.Name != "sessions" || binding.Spec.PolicyName != policy.Name {
		t.Errorf("policy %q, binding %q for %q: the messages below name policy and binding sessions", policy.Name, binding.Name, binding.Spec.PolicyName)
	}
	if fp := policy.Spec.FailurePolicy; fp == nil || *fp != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy %v, want Fail: an expression that errors must refuse", fp)
	}
	if !slices.Equal(binding.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
		t.Errorf("binding validationActions %v, want [Deny]", binding.Spec.ValidationActions)
	}
	if binding.Spec.MatchResources != nil || binding.Spec.ParamRef != nil {
		t.Errorf("the binding narrows the policy (matchResources %v, paramRef %v): it must hold in every namespace", binding.Spec.MatchResources, binding.Spec.ParamRef)
	}
	// compile copies the API server's compilePolicy for exactly this shape.
	if policy.Spec.ParamKind != nil || len(policy.Spec.MatchConditions) > 0 || len(policy.Spec.AuditAnnotations) > 0 {
		t.Errorf("the policy gained paramKind, matchConditions or auditAnnotations: extend compile() in harness_test.go")
	}
	if len(policy.Spec.Validations) != validationCount {
		t.Errorf("%d validations, the tests know %d: add cases for the new ones", len(policy.Spec.Validations), validationCount)
	}
	mc := policy.Spec.MatchConstraints
	if mc == nil || len(mc.ResourceRules) != 1 || len(mc.ExcludeResourceRules) > 0 ||
		(mc.NamespaceSelector != nil && (len(mc.NamespaceSelector.MatchLabels) > 0 || len(mc.NamespaceSelector.MatchExpressions) > 0)) ||
		(mc.ObjectSelector != nil && (len(mc.ObjectSelector.MatchLabels) > 0 || len(mc.ObjectSelector.MatchExpressions) > 0)) {
		t.Fatalf("matchConstraints %+v: want one rule, no exclusions or selectors", mc)
	}
	rule := mc.ResourceRules[0]
	ops := slices.Sorted(slices.Values(rule.Operations))
	if !slices.Equal(rule.APIGroups, []string{sessionsGVR.Group}) || !slices.Equal(rule.Resources, []string{sessionsGVR.Resource}) ||
		!slices.Equal(rule.APIVersions, []string{"*"}) ||
		!slices.Equal(ops, []admissionregistrationv1.OperationType{"CREATE", "DELETE", "UPDATE"}) {
		t.Errorf("resource rule %+v: want CREATE, UPDATE and DELETE of debugsessions.%s in every version", rule, sessionsGVR.Group)
	}
	if _, err := compile(policy); err != nil {
		t.Errorf("compiling: %v", err)
	}
}

func TestCreate(t *testing.T) {
	noUID := &user.DefaultInfo{Name: "dev", Groups: []string{"system:authenticated"}}
	bare := &user.DefaultInfo{Name: "dev"}
	create := func(u *user.DefaultInfo, edit func(spec, meta map[string]any)) request {
		return request{op: admission.Create, caller: u, object: session(edit)}
	}
	run(t, []testCase{
		{name: "requester stamped as the caller is admitted", req: create(dev(), nil)},
		{name: "caller without uid or extra, stamped as such, is admitted",
			req: create(noUID, func(s, _ map[string]any) { s["requester"] = requesterOf(noUID) })},
		{name: "caller with nothing but a name is admitted",
			req: create(bare, func(s, _ map[string]any) { s["requester"] = map[string]any{"username": "dev"} })},
		{name: "no requester is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) { delete(s, "requester") })},
		{name: "requester naming someone else is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) { s["requester"] = requesterOf(caller("ops")) })},
		{name: "requester with another uid is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) { s["requester"].(map[string]any)["uid"] = "forged" })},
		{name: "requester with a uid the caller lacks is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(noUID, func(s, _ map[string]any) {
				r := requesterOf(noUID)
				r["uid"] = "forged"
				s["requester"] = r
			})},
		{name: "requester with an extra group is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) {
				s["requester"].(map[string]any)["groups"] = []any{"dev", "system:authenticated", "system:masters"}
			})},
		{name: "requester without the caller's groups is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) { delete(s["requester"].(map[string]any), "groups") })},
		{name: "requester with the groups in another order is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) {
				s["requester"].(map[string]any)["groups"] = []any{"system:authenticated", "dev"}
			})},
		{name: "requester with other extra is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) {
				s["requester"].(map[string]any)["extra"] = map[string]any{"scopes.example/tier": []any{"prod"}}
			})},
		{name: "requester without the caller's extra is refused", message: msgRequesterDev, denied: []int{vRequesterIsCaller},
			req: create(dev(), func(s, _ map[string]any) { delete(s["requester"].(map[string]any), "extra") })},
		{name: "created approved is refused", message: msgCreatedApproved, denied: []int{vNotCreatedApproved},
			req: create(dev(), func(s, _ map[string]any) { s["approval"] = approval("ops") })},
		{name: "created approved with a forged requester names the requester first", message: msgRequesterDev,
			denied: []int{vRequesterIsCaller, vNotCreatedApproved},
			req: create(dev(), func(s, _ map[string]any) {
				s["requester"] = requesterOf(caller("ops"))
				s["approval"] = approval("ops")
			})},
		{name: "created without the finalizer by its requester is admitted",
			req: create(dev(), func(_, m map[string]any) { delete(m, "finalizers") })},
	})
}

// update is an UPDATE by u from the default session to the one edit makes; before edits
// the old one.
func update(u *user.DefaultInfo, before, edit func(spec, meta map[string]any)) request {
	old := session(before)
	return request{op: admission.Update, caller: u, old: old, object: session(func(s, m map[string]any) {
		if before != nil {
			before(s, m)
		}
		if edit != nil {
			edit(s, m)
		}
	})}
}

func approved(s, _ map[string]any) { s["approval"] = approval("ops") }

func TestUpdateRequesterAndApproval(t *testing.T) {
	noRequester := func(s, _ map[string]any) { delete(s, "requester") }
	run(t, []testCase{
		{name: "requester unchanged, a label added, is admitted",
			req: update(dev(), nil, func(_, m map[string]any) { m["labels"] = map[string]any{"team": "web"} })},
		{name: "requester changed is refused", message: msgRequesterFixed, denied: []int{vRequesterFixed},
			req: update(dev(), nil, func(s, _ map[string]any) { s["requester"] = requesterOf(caller("ops")) })},
		{name: "requester's groups changed is refused", message: msgRequesterFixed, denied: []int{vRequesterFixed},
			req: update(dev(), nil, func(s, _ map[string]any) {
				s["requester"].(map[string]any)["groups"] = []any{"dev", "system:masters"}
			})},
		{name: "requester removed is refused", message: msgRequesterFixed, denied: []int{vRequesterFixed},
			req: update(dev(), nil, noRequester)},
		{name: "requester added to a session that had none is refused", message: msgRequesterFixed, denied: []int{vRequesterFixed},
			req: update(dev(), noRequester, func(s, _ map[string]any) { s["requester"] = requesterOf(dev()) })},
		{name: "approval added by the approver it names is admitted",
			req: update(caller("ops"), nil, approved)},
		{name: "approval added naming someone other than the caller is refused", message: msgApprovalOnce, denied: []int{vApprovalOnce},
			req: update(caller("mallory"), nil, approved)},
		{name: "approval added by the requester naming themselves is refused", message: msgApprovalOnce, denied: []int{vApprovalOnce},
			req: update(dev(), nil, func(s, _ map[string]any) { s["approval"] = approval("dev") })},
		{name: "approval added to a session without requester by the approver it names is admitted",
			req: update(caller("ops"), noRequester, approved)},
		{name: "approval kept unchanged is admitted",
			req: update(dev(), approved, func(_, m map[string]any) { m["labels"] = map[string]any{"team": "web"} })},
		{name: "approval changed by its approver is refused", message: msgApprovalOnce, denied: []int{vApprovalOnce},
			req: update(caller("ops"), approved, func(s, _ map[string]any) { s["approval"].(map[string]any)["decision"] = "Rejected" })},
		{name: "approval re-signed by another approver is refused", message: msgApprovalOnce, denied: []int{vApprovalOnce},
			req: update(caller("bob"), approved, func(s, _ map[string]any) { s["approval"] = approval("bob") })},
		{name: "approval removed is refused", message: msgApprovalOnce, denied: []int{vApprovalOnce},
			req: update(dev(), approved, func(s, _ map[string]any) { delete(s, "approval") })},
		{name: "requester swapped for the approver, then self-approved, names the requester first", message: msgRequesterFixed,
			denied: []int{vRequesterFixed, vApprovalOnce},
			req: update(caller("ops"), nil, func(s, _ map[string]any) {
				s["requester"] = requesterOf(caller("ops"))
				s["approval"] = approval("ops")
			})},
	})
}

func TestUpdateFinalizer(t *testing.T) {
	strip := func(_, m map[string]any) { m["finalizers"] = []any{} }
	run(t, []testCase{
		{name: "finalizer removed by the operator (finalize) is admitted", req: update(caller(operator), nil, strip)},
		{name: "finalizer removed by a cluster admin (every verb) is admitted", req: update(caller("cluster-admin"), nil, strip)},
		{name: "finalizer removed by the requester is refused", message: msgFinalizer("dev"), denied: []int{vFinalizer},
			req: update(dev(), nil, strip)},
		{name: "finalizer field dropped by the requester is refused", message: msgFinalizer("dev"), denied: []int{vFinalizer},
			req: update(dev(), nil, func(_, m map[string]any) { delete(m, "finalizers") })},
		{name: "finalizer removed by a namespace admin (manage, no finalize) is refused", message: msgFinalizer("ns-admin"),
			denied: []int{vFinalizer}, req: update(caller("ns-admin"), nil, strip)},
		{name: "another finalizer removed, ours kept, is admitted",
			req: update(dev(), func(_, m map[string]any) { m["finalizers"] = []any{"example.com/other", finalizer} },
				func(_, m map[string]any) { m["finalizers"] = []any{finalizer} })},
		{name: "a session that never had the finalizer is updated freely",
			req: update(dev(), func(_, m map[string]any) { delete(m, "finalizers") },
				func(_, m map[string]any) { m["labels"] = map[string]any{"team": "web"} })},
	})
}

func TestTTLAndDelete(t *testing.T) {
	ttl := func(s, _ map[string]any) { s["ttl"] = "2h" }
	del := func(u *user.DefaultInfo, before func(spec, meta map[string]any)) request {
		return request{op: admission.Delete, caller: u, old: session(before)}
	}
	run(t, []testCase{
		{name: "ttl changed by the requester is admitted", req: update(dev(), nil, ttl)},
		{name: "ttl changed by another user is refused", message: msgManage("ops", "change the ttl of"), denied: []int{vManage},
			req: update(caller("ops"), nil, ttl)},
		{name: "ttl changed by a holder of manage is admitted", req: update(caller("ns-admin"), nil, ttl)},
		{name: "ttl changed by a kube-system controller is admitted", req: update(caller(nsGC), nil, ttl)},
		{name: "ttl changed by the kube-controller-manager is admitted", req: update(caller(kcm), nil, ttl)},
		{name: "ttl changed by someone named like a kube-system controller is refused",
			message: msgManage("system:serviceaccount:kube-systemx:gc", "change the ttl of"), denied: []int{vManage},
			req: update(caller("system:serviceaccount:kube-systemx:gc"), nil, ttl)},
		{name: "another user's update that keeps the ttl is admitted",
			req: update(caller("ops"), nil, func(_, m map[string]any) { m["labels"] = map[string]any{"team": "web"} })},
		{name: "ttl of a session without requester changed by anyone is admitted",
			req: update(caller("ops"), func(s, _ map[string]any) { delete(s, "requester") }, ttl)},
		{name: "deleted, finalizer and all, by the requester is admitted (the finalizer rule is for updates)", req: del(dev(), nil)},
		{name: "deleted by another user is refused", message: msgManage("ops", "delete"), denied: []int{vManage},
			req: del(caller("ops"), nil)},
		{name: "deleted by a holder of manage is admitted", req: del(caller("ns-admin"), nil)},
		{name: "deleted by the namespace controller is admitted", req: del(caller(nsGC), nil)},
		{name: "deleted by the kube-controller-manager is admitted", req: del(caller(kcm), nil)},
		{name: "session without requester deleted by anyone is admitted",
			req: del(caller("ops"), func(s, _ map[string]any) { delete(s, "requester") })},
	})
}

// The authorizer is asked about the session under review, as the caller, for exactly the
// custom verbs; nobody is asked when the cheaper checks already decide.
func TestAuthorizerQuestions(t *testing.T) {
	c := load(t)
	strip := func(_, m map[string]any) { m["finalizers"] = []any{} }
	for _, tc := range []struct {
		name  string
		req   request
		asked []string
	}{
		{"the requester's own ttl change asks nothing", update(dev(), nil, func(s, _ map[string]any) { s["ttl"] = "2h" }), nil},
		{"another user's delete asks for manage", request{op: admission.Delete, caller: caller("ns-admin"), old: session(nil)}, []string{"ns-admin manage"}},
		{"a kube-system controller's delete asks nothing", request{op: admission.Delete, caller: caller(nsGC), old: session(nil)}, nil},
		{"removing the finalizer asks for finalize", update(caller(operator), nil, strip), []string{operator + " finalize"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.evaluate(t, rbac, tc.req)
			if got.message != "" {
				t.Errorf("refused: %s", got.message)
			}
			if !slices.Equal(got.asked, tc.asked) {
				t.Errorf("asked %q, want %q", got.asked, tc.asked)
			}
		})
	}
}

// Runs last (go test runs top-level tests in file order, and this file's last).
func TestEveryValidationRefuses(t *testing.T) {
	if testing.Short() || len(refused) == 0 {
		t.Skip("needs the case tests to have run (go test without -run)")
	}
	for i := range validationCount {
		if !refused[i] {
			t.Errorf("no case saw validation %d refuse: %v", i, slices.Sorted(maps.Keys(refused)))
		}
	}
}
