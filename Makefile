# shellcar: `make` lists the targets.
SHELL := /bin/bash
CLUSTER := e2e/cluster
E2E_THREADS ?= 3

.PHONY: help run test unit e2e bench chaos cluster-up cluster-down deploy image crds lint fmt

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: cluster-up ## Bring up the local cluster, deploy the operator, apply the sample session
	e2e/deploy sample

test: unit e2e ## Run every test: unit, then end to end on the local cluster

# The kustomize checks render config/ with the kubectl built from source (e2e/cluster build).
unit: ## Unit tests and the crds/ drift check (no cluster; builds kubectl if needed)
	$(CLUSTER) build
	eval "$$($(CLUSTER) env)" && cargo test --locked -p shellcar

e2e: cluster-up deploy ## End-to-end tests on the local cluster (brought up if needed)
	# Build outside the cluster's network namespace, which has no route to the registry.
	cargo test --locked -p shellcar-e2e --no-run
	$(CLUSTER) exec -- cargo test --locked -p shellcar-e2e --no-fail-fast -- --test-threads=$(E2E_THREADS)

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
