# shellcheck shell=bash
# The cluster's binaries, built from Go modules with the ordinary `go` command: the only
# source of a current Kubernetes, etcd, containerd and runc that this offline machine can
# reach is the Go module proxy. Each component has a go.mod of ours under e2e/k8s/ that
# pins its version (and go.sum its content); nothing is vendored or committed beside it.
#
#   e2e/k8s/kubernetes-1.MINOR  k8s.io/kubernetes, with every k8s.io/* staging module
#                               replaced by its matching v0.MINOR.PATCH (a module that
#                               requires k8s.io/kubernetes must say so itself)
#   e2e/k8s/etcd                go.etcd.io/etcd/server/v3 (the etcd server's main package)
#   e2e/k8s/containerd          containerd v2: containerd, its runc shim, ctr
#   e2e/k8s/runc                runc (cgo, with libseccomp)
#
# Binaries are cached under $CACHE keyed by the go.mod and go.sum they were built from, and
# the module and build caches live in $CACHE/go: a warm `up` builds nothing, a lost bin/
# rebuilds in seconds, and a fresh machine builds everything (docs/local-cluster.md has the
# cold times).
#
# Expects: KVER, KDIR, KBIN, RBIN, HERE, CACHE, plus lib/common.sh.

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
RUNTIME_BINARIES=(etcd containerd containerd-shim-runc-v2 ctr runc)

# Bump when the way the binaries are built changes, so cached binaries are rebuilt.
BUILD_REV=3

K8S_MOD_DIR=$HERE/k8s/kubernetes-$(cut -d. -f1-2 <<<"$KVER")

# go_env: the go command's environment for every build here. GOTOOLCHAIN=local: the Go on
# the machine builds (1.26.8 is what every pinned module asks for or less); GOFLAGS clears
# whatever the caller's environment sets (-mod=readonly is go build's default: go.sum
# must already hold every module's hash).
go_env() {
  env GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local GOFLAGS=-trimpath \
    GOWORK=off "$@"
}

# module_version DIR MODULE: the version DIR's go.mod requires of MODULE.
module_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

# build_key DIR...: what the binaries built from DIRs depend on (their go.mod and go.sum,
# this file's BUILD_REV and the Go version).
build_key() {
  { cat "${@/%//go.mod}" "${@/%//go.sum}"; echo "$BUILD_REV"; go version; } | sha256sum | cut -c1-16
}

check_k8s_module() {
  [[ -f $K8S_MOD_DIR/go.mod ]] ||
    die "no go.mod for Kubernetes $KVER: SHELLCAR_K8S_VERSION must be a release pinned under e2e/k8s/ ($(cd "$HERE/k8s" && ls -d kubernetes-* | tr '\n' ' '))"
  local pinned
  pinned=$(module_version "$K8S_MOD_DIR" k8s.io/kubernetes)
  [[ $pinned == "v$KVER" ]] ||
    die "SHELLCAR_K8S_VERSION=$KVER, but ${K8S_MOD_DIR#"$HERE/"}/go.mod pins k8s.io/kubernetes $pinned: use ${pinned#v}, or pin $KVER there"
}

binaries_cached() {
  local b
  check_k8s_module
  for b in "${K8S_COMMANDS[@]}" pause; do
    [[ -x $KBIN/$b ]] || return 1
  done
  for b in "${RUNTIME_BINARIES[@]}"; do
    [[ -x $RBIN/$b ]] || return 1
  done
  [[ $(cat "$KBIN/.build-key" 2>/dev/null) == "$(build_key "$K8S_MOD_DIR")" ]] &&
    [[ $(cat "$RBIN/.build-key" 2>/dev/null) == "$(build_key "$HERE/k8s/etcd" "$HERE/k8s/containerd" "$HERE/k8s/runc")" ]]
}

# go_build LOG DIR OUT [go build args...]: `go build` in module DIR into OUT; dies with the
# log's tail on failure.
go_build() {
  local logf=$1 dir=$2 out=$3 t0=$SECONDS
  shift 3
  if ! (cd "$dir" && go_env go build -o "$out" "$@") >>"$logf" 2>&1; then
    tail_log "$logf"
    die "go build in ${dir#"$HERE/"} failed (log: $logf)"
  fi
  log "    built $(basename "$out") and co. in $((SECONDS - t0))s"
}

# The version ldflags: /version and `kubectl version` must say v$KVER, or version-based
# logic (the operator's floor, kubectl's skew warnings) reads v0.0.0-master.
k8s_ldflags() {
  local minor p flags="-s -w"
  minor=$(cut -d. -f2 <<<"$KVER")
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=v$KVER -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$flags"
}

build_kubernetes() {
  check_k8s_module
  local logf=$KDIR/build.log c pkgs=() src
  mkdir -p "$KDIR"
  : >"$logf"
  for c in "${K8S_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  rm -rf "$KBIN.tmp"
  mkdir -p "$KBIN.tmp"
  log "building ${K8S_COMMANDS[*]} v$KVER from Go modules (cold: ~20 min on 2 cores; warm: seconds; log: $logf)"
  # CGO off: static binaries; the kubelet needs no cgo on Linux.
  go_build "$logf" "$K8S_MOD_DIR" "$KBIN.tmp/" -ldflags "$(k8s_ldflags)" "${pkgs[@]}"
  # The pause binary of the sandbox image, from the same module's source.
  src=$CACHE/go/mod/k8s.io/kubernetes@v$KVER/build/pause/linux/pause.c
  [[ -f $src ]] || die "$src missing from the module cache"
  gcc -Os -static -o "$KBIN.tmp/pause" "$src" >>"$logf" 2>&1 || die "compiling pause.c failed (see $logf)"
  strip "$KBIN.tmp/pause" 2>/dev/null || true
  build_key "$K8S_MOD_DIR" >"$KBIN.tmp/.build-key"
  # bin/ appears whole or not at all, and never under a running binary.
  rm -rf "$KBIN"
  mv "$KBIN.tmp" "$KBIN"
}

build_runtime() {
  local logf=$RDIR/build.log d=$HERE/k8s v
  mkdir -p "$RDIR"
  : >"$logf"
  rm -rf "$RBIN.tmp"
  mkdir -p "$RBIN.tmp"
  v=$(module_version "$d/etcd" go.etcd.io/etcd/server/v3)
  log "building etcd $v, containerd $(module_version "$d/containerd" github.com/containerd/containerd/v2) and runc $(module_version "$d/runc" github.com/opencontainers/runc) from Go modules (log: $logf)"
  go_build "$logf" "$d/etcd" "$RBIN.tmp/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
  # Without cgo, and without the snapshotters that need it (btrfs, devmapper, zfs):
  # overlayfs is the one the cluster uses.
  v=$(module_version "$d/containerd" github.com/containerd/containerd/v2)
  CGO_ENABLED=0 go_build "$logf" "$d/containerd" "$RBIN.tmp/" -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  # runc needs cgo, and libseccomp (Debian's libseccomp-dev) for the seccomp profiles the
  # debugger profiles ask for.
  v=$(module_version "$d/runc" github.com/opencontainers/runc)
  CGO_ENABLED=1 go_build "$logf" "$d/runc" "$RBIN.tmp/runc" -tags seccomp \
    -ldflags "-s -w -X main.version=${v#v}" github.com/opencontainers/runc
  build_key "$d/etcd" "$d/containerd" "$d/runc" >"$RBIN.tmp/.build-key"
  rm -rf "$RBIN"
  mv "$RBIN.tmp" "$RBIN"
}

# One build at a time on the machine, whichever cluster or version asks (fd 8, released
# before any daemon starts).
build_binaries() {
  mkdir -p /run/lock
  exec 8>/run/lock/shellcar-build.lock
  flock -w 3600 8 || die "another e2e/cluster build holds /run/lock/shellcar-build.lock"
  [[ $(cat "$KBIN/.build-key" 2>/dev/null) == "$(build_key "$K8S_MOD_DIR")" && -x $KBIN/pause ]] ||
    phase build-kubernetes build_kubernetes
  [[ $(cat "$RBIN/.build-key" 2>/dev/null) == "$(build_key "$HERE/k8s/etcd" "$HERE/k8s/containerd" "$HERE/k8s/runc")" ]] ||
    phase build-runtime build_runtime
  exec 8>&-
}
