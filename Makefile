# shellcar: `make` lists the targets.
SHELL := /bin/bash
CLUSTER := e2e/cluster
E2E_THREADS ?= 3

.PHONY: help run test unit test-cel e2e bench chaos cluster-up cluster-down deploy image crds lint fmt

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: cluster-up ## Bring up the local cluster, deploy the operator, apply the sample session
	e2e/deploy sample

test: unit test-cel e2e ## Run every test: unit, the admission policy's CEL, then end to end on the local cluster

# The kustomize checks render config/ with the kubectl built from source (e2e/cluster build).
unit: ## Unit tests and the crds/ drift check (no cluster; builds kubectl if needed)
	$(CLUSTER) build
	eval "$$($(CLUSTER) env)" && cargo test --locked -p shellcar

# Go as e2e/lib/build.sh runs it: the machine's go from PATH (GOTOOLCHAIN=local), GOFLAGS
# cleared, the module and build caches shared with the cluster's build, the proxy from the
# environment.
GO_CACHE := $(or $(SHELLCAR_CACHE),$(HOME)/.cache/shellcar)/go
test-cel: ## The ValidatingAdmissionPolicy's CEL, evaluated by k8s.io/apiserver's own code (no cluster)
	cd e2e/cel && GOMODCACHE=$(GO_CACHE)/mod GOCACHE=$(GO_CACHE)/build GOTOOLCHAIN=local GOWORK=off \
		GOFLAGS=-trimpath go test -count=1 ./...

e2e: cluster-up deploy ## End-to-end tests on the local cluster (brought up if needed)
	# Build outside the cluster's network namespace, which has no route to the registry.
	cargo test --locked -p shellcar-e2e --no-run
	# The attack tests append to the security report (e2e/src/attack.rs): start it empty,
	# print its table after the tests, pass or fail; a failed test or an attack not
	# contained fails the target.
	cargo run --locked -q -p shellcar-e2e --bin security-report -- --reset
	rc=0; $(CLUSTER) exec -- cargo test --locked -p shellcar-e2e --no-fail-fast -- --test-threads=$(E2E_THREADS) || rc=$$?; \
		cargo run --locked -q -p shellcar-e2e --bin security-report || { ((rc)) || rc=1; }; exit $$rc

# SHELLCAR_BENCH_PAIRS, _SESSIONS, _UNRELATED, _CLIENTS, _LIFECYCLES, _IDLE_SECONDS and _ONLY
# change the scale (see e2e/src/bench/mod.rs).
bench: cluster-up ## Benchmark the release build on the local cluster against kubectl; prints a table with the targets
	SHELLCAR_RELEASE=1 e2e/deploy
	# Build outside the cluster's network namespace, which has no route to the registry.
	cargo bench --locked -p shellcar-e2e --bench sessions --no-run
	$(CLUSTER) exec -- cargo bench --locked -p shellcar-e2e --bench sessions

CHAOS_LIFECYCLES ?= 100
chaos: cluster-up deploy ## 100 session lifecycles with the leader SIGKILLed at random (make test runs 20)
	cargo test --locked -p shellcar-e2e --test chaos --no-run
	$(CLUSTER) exec -- env SHELLCAR_CHAOS_LIFECYCLES=$(CHAOS_LIFECYCLES) cargo test --locked -p shellcar-e2e --test chaos -- --nocapture

cluster-up: ## Build (cached) and start the local two-node Kubernetes 1.37 cluster (SHELLCAR_K8S_VERSION=1.33.13 for the oldest)
	$(CLUSTER) up

cluster-down: ## Stop the local cluster and remove its state
	$(CLUSTER) down

deploy: ## Build the operator image and deploy it into the local cluster
	e2e/deploy

image: ## Build the operator image (release) as an OCI archive, target/image/shellcar-VERSION.tar
	hack/image

crds: ## Regenerate crds/ from the Rust types
	cargo run --locked -q -p shellcar -- crd --out-dir crds

lint: ## rustfmt and clippy, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	cargo fmt --all
