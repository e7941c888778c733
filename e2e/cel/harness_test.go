// Package cel tests config/crd/admission_policy.yaml without a cluster: its CEL compiled
// and evaluated by the packages the kube-apiserver itself runs for a
// ValidatingAdmissionPolicy (k8s.io/apiserver at the Kubernetes version the local cluster
// builds), against crafted requests. e2e/tests/admission_policy.rs checks the same policy
// in a real API server.
package cel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"
)

// The policy as shipped: read from the repository, never copied, so a change to it that
// these tests do not expect fails them.
const policyPath = "../../config/crd/admission_policy.yaml"

var (
	sessionsGVR = schema.GroupVersionResource{Group: "debug.shellcar.dev", Version: "v1alpha1", Resource: "debugsessions"}
	sessionGVK  = schema.GroupVersionKind{Group: "debug.shellcar.dev", Version: "v1alpha1", Kind: "DebugSession"}
)

// loadPolicy reads the ValidatingAdmissionPolicy and its binding from policyPath.
func loadPolicy(t *testing.T) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	raw, err := os.ReadFile(filepath.FromSlash(policyPath))
	if err != nil {
		t.Fatalf("reading the policy: %v", err)
	}
	var policy *admissionregistrationv1.ValidatingAdmissionPolicy
	var binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("document %d of %s: %v", i, policyPath, err)
		}
		switch meta.Kind {
		case "ValidatingAdmissionPolicy":
			policy = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			if err := yaml.UnmarshalStrict(doc, policy); err != nil {
				t.Fatalf("the policy: %v", err)
			}
		case "ValidatingAdmissionPolicyBinding":
			binding = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			if err := yaml.UnmarshalStrict(doc, binding); err != nil {
				t.Fatalf("the binding: %v", err)
			}
		default:
			t.Fatalf("document %d of %s is a %q, expected only the policy and its binding", i, policyPath, meta.Kind)
		}
	}
	if policy == nil || binding == nil {
		t.Fatalf("%s must hold a ValidatingAdmissionPolicy and its binding", policyPath)
	}
	return policy, binding
}

// compile does what the API server does with a policy: the body of compilePolicy in
// k8s.io/apiserver/pkg/admission/plugin/policy/validating/plugin.go (v0.37.2), which is
// unexported, for a policy with no params and no matchConditions (checked in
// TestPolicyShape).
func compile(policy *admissionregistrationv1.ValidatingAdmissionPolicy) (validating.Validator, error) {
	optionalVars := cel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true}
	messageVars := cel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: false}
	compiler, err := cel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return nil, err
	}
	variables := make([]cel.NamedExpressionAccessor, len(policy.Spec.Variables))
	for i, v := range policy.Spec.Variables {
		variables[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	compiler.CompileAndStoreVariables(variables, optionalVars, environment.StoredExpressions)
	validations := make([]cel.ExpressionAccessor, len(policy.Spec.Validations))
	messages := make([]cel.ExpressionAccessor, len(policy.Spec.Validations))
	for i, v := range policy.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	v := validating.NewValidator(
		compiler.CompileCondition(validations, optionalVars, environment.StoredExpressions),
		nil,
		compiler.CompileCondition(nil, optionalVars, environment.StoredExpressions),
		compiler.CompileCondition(messages, messageVars, environment.StoredExpressions),
		policy.Spec.FailurePolicy,
		nil,
	)
	return v, v.CompileError()
}

// grants is the fake authorizer: which verbs on debugsessions each user holds. It answers
// only for the session under review (group, resource, namespace and name), so an
// expression that asks about another object is denied.
type grants struct {
	verbs     map[string][]string
	namespace string
	name      string
	asked     *[]string // "user verb", in order
}

func (g grants) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	*g.asked = append(*g.asked, a.GetUser().GetName()+" "+a.GetVerb())
	if a.GetAPIGroup() != sessionsGVR.Group || a.GetResource() != sessionsGVR.Resource ||
		a.GetSubresource() != "" || a.GetNamespace() != g.namespace || a.GetName() != g.name {
		return authorizer.DecisionDeny, fmt.Sprintf("asked about %s/%s %s/%s", a.GetAPIGroup(), a.GetResource(), a.GetNamespace(), a.GetName()), nil
	}
	if slices.Contains(g.verbs[a.GetUser().GetName()], a.GetVerb()) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// request is one admission request for a DebugSession.
type request struct {
	op     admission.Operation
	caller *user.DefaultInfo
	object map[string]any // nil on DELETE
	old    map[string]any // nil on CREATE
}

// outcome is what the API server answers: "" when it admits, else its error message, and
// the indices of the validations that refused.
type outcome struct {
	message string
	denied  []int
	asked   []string
}

// compiled is the policy as the API server holds it once loaded.
type compiled struct {
	validator validating.Validator
	policy    string
	binding   string
}

var (
	compileOnce sync.Once
	shipped     compiled
	compileErr  error
)

// load reads and compiles the shipped policy (once per test binary).
func load(t *testing.T) compiled {
	t.Helper()
	compileOnce.Do(func() {
		policy, binding := loadPolicy(t)
		shipped = compiled{policy: policy.Name, binding: binding.Name}
		shipped.validator, compileErr = compile(policy)
	})
	if compileErr != nil || shipped.validator == nil {
		t.Fatalf("compiling %s: %v", policyPath, compileErr)
	}
	return shipped
}

// evaluate runs the compiled policy on r as the API server's dispatcher does once the
// policy matched: every validation, the first refusal's message, under the binding's name.
func (c compiled) evaluate(t *testing.T, verbs map[string][]string, r request) outcome {
	t.Helper()
	// Interfaces, not typed nil pointers: the API server passes a nil Object on DELETE.
	var obj, old runtime.Object
	meta := r.object
	if r.object != nil {
		obj = &unstructured.Unstructured{Object: r.object}
	}
	if r.old != nil {
		old = &unstructured.Unstructured{Object: r.old}
		meta = r.old
	}
	u := unstructured.Unstructured{Object: meta}
	attrs := admission.NewAttributesRecord(obj, old, sessionGVK, u.GetNamespace(), u.GetName(), sessionsGVR, "", r.op, nil, false, r.caller)
	versioned, err := admission.NewVersionedAttributes(attrs, sessionGVK, nil)
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	authz := grants{verbs: verbs, namespace: u.GetNamespace(), name: u.GetName(), asked: &asked}
	result := c.validator.Validate(context.Background(), sessionsGVR, versioned, nil, nil, celconfig.RuntimeCELCostBudget, authz)
	var out outcome
	for i, d := range result.Decisions {
		if d.Evaluation == validating.EvalError {
			t.Fatalf("validation %d failed to evaluate (failurePolicy Fail refuses then): %s", i, d.Message)
		}
		if d.Action != validating.ActionDeny {
			continue
		}
		if d.Reason != "Forbidden" {
			t.Errorf("validation %d refused with reason %q, expected Forbidden", i, d.Reason)
		}
		if out.message == "" {
			out.message = fmt.Sprintf("ValidatingAdmissionPolicy '%s' with binding '%s' denied request: %s", c.policy, c.binding, d.Message)
		}
		out.denied = append(out.denied, i)
	}
	out.asked = asked
	return out
}
