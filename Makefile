# shellcar: `make` lists the targets.
SHELL := /bin/bash
CLUSTER := e2e/cluster
E2E_THREADS ?= 3

.PHONY: help run test unit e2e bench chaos cluster-up cluster-down deploy crds lint fmt

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: cluster-up ## Bring up the local cluster, deploy the operator, apply the sample session
	e2e/deploy sample

test: unit e2e ## Run every test: unit, then end to end on the local cluster

unit: ## Unit tests and the crds/ drift check (no cluster)
	cargo test --locked -p shellcar

e2e: cluster-up deploy ## End-to-end tests on the local cluster (brought up if needed)
	# Build outside the cluster's network namespace, which has no route to the registry.
	cargo test --locked -p shellcar-e2e --no-run
	$(CLUSTER) exec -- cargo test --locked -p shellcar-e2e -- --test-threads=$(E2E_THREADS)

bench: cluster-up deploy ## Benchmark on the local cluster: latency, throughput, memory (prints numbers)
	cargo bench --locked -p shellcar-e2e --no-run
	$(CLUSTER) exec -- cargo bench --locked -p shellcar-e2e --bench sessions

CHAOS_LIFECYCLES ?= 100
chaos: cluster-up deploy ## 100 session lifecycles with the leader SIGKILLed at random (make test runs 20)
	cargo test --locked -p shellcar-e2e --test chaos --no-run
	$(CLUSTER) exec -- env SHELLCAR_CHAOS_LIFECYCLES=$(CHAOS_LIFECYCLES) cargo test --locked -p shellcar-e2e --test chaos -- --nocapture

cluster-up: ## Build (cached) and start the local cluster
	$(CLUSTER) up

cluster-down: ## Stop the local cluster and remove its state
	$(CLUSTER) down

deploy: ## Build the operator image and deploy it into the local cluster
	e2e/deploy

crds: ## Regenerate crds/ from the Rust types
	cargo run --locked -q -p shellcar -- crd --out-dir crds

lint: ## rustfmt and clippy, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	cargo fmt --all
