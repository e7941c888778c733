# shellcheck shell=bash
# Getting Kubernetes binaries: Debian's `kubernetes` source package (the only
# full Kubernetes source this offline machine can reach), built with `make` as
# debian/rules does, cached by version under $KDIR.
#
# Expects: KVER, KDIR, KBIN, KSRC, CACHE, plus lib/common.sh.

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

# Bump when the way the binaries are built changes, so cached binaries are rebuilt.
# 2: vendored reflect2 1.0.1 replaced by Debian's 1.0.2 (see patch_vendor).
BUILD_REV=2

binaries_cached() {
  local b
  for b in "${K8S_COMMANDS[@]}" pause; do
    [[ -x $KBIN/$b ]] || return 1
  done
  [[ $(cat "$KBIN/.build-rev" 2>/dev/null) == "$BUILD_REV" ]]
}

# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which breaks under
# Go >= 1.18 (the only Go here is 1.19): the API server dies with "fatal error: fault"
# in mapiterinit while json-iterator encodes a map. v1.0.2 fixed exactly that and has
# the same API; Debian packages it, so swap it into the vendor tree.
patch_vendor() {
  local vendored=$KSRC/vendor/github.com/modern-go/reflect2
  local fixed=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -f $fixed/reflect2.go ]] || die "$fixed missing: install golang-github-modern-go-reflect2-dev"
  if ! cmp -s "$fixed/unsafe_map.go" "$vendored/unsafe_map.go"; then
    log "replacing vendored reflect2 1.0.1 with Debian's 1.0.2 (Go 1.18+ map iteration fix)"
    rm -rf "$vendored"
    mkdir -p "$vendored"
    cp "$fixed"/*.go "$vendored"/
    rm -f "$vendored"/*_test.go
  fi
}

# Private apt configuration: the machine lists only `Types: deb`; we add a
# deb-src stanza derived at run time from the machine's own sources (so no
# host name is written anywhere) and keep lists/cache under $KDIR/apt, so the
# system's apt state is not changed.
apt_private() {
  local apt=$KDIR/apt
  apt-get -o Dir::Etc::SourceList=/dev/null \
    -o Dir::Etc::SourceParts="$apt/sources.list.d" \
    -o Dir::State::Lists="$apt/lists" \
    -o Dir::Cache="$apt/cache" \
    -o APT::Sandbox::User=root \
    "$@"
}

fetch_source() {
  if [[ -f $KSRC/Makefile ]]; then
    log "source tree already in $KSRC"
    return 0
  fi
  local apt=$KDIR/apt work=$KDIR/src.tmp src=/etc/apt/sources.list.d/debian.sources
  [[ -r $src ]] || die "$src not found: cannot derive a deb-src stanza"
  rm -rf "$apt" "$work"
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$work"
  # First stanza of the machine's deb822 sources, with Types: deb -> deb-src.
  awk 'BEGIN { RS = ""; FS = "\n" }
       NR == 1 { for (i = 1; i <= NF; i++) { if ($i ~ /^Types:/) $i = "Types: deb-src"; print $i }; exit }' \
    "$src" >"$apt/sources.list.d/shellcar-src.sources"
  grep -q '^Types: deb-src' "$apt/sources.list.d/shellcar-src.sources" || die "could not derive a deb-src stanza from $src"
  apt_private -qq update >"$KDIR/apt-update.log" 2>&1 || {
    tail_log "$KDIR/apt-update.log"
    die "private apt-get update failed"
  }
  (cd "$work" && apt_private -q source kubernetes) >"$KDIR/apt-source.log" 2>&1 || {
    tail_log "$KDIR/apt-source.log"
    die "apt-get source kubernetes failed"
  }
  local tree
  tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -n $tree && -f $tree/Makefile ]] || die "apt-get source produced no kubernetes tree in $work"
  # Debian calls it 1.20.5+really1.20.2: make sure we got the version the
  # cache key claims.
  [[ ${tree##*/} == *"really$KVER" || ${tree##*/} == "kubernetes-$KVER" ]] ||
    die "source version ${tree##*/} does not match expected $KVER (set SHELLCAR_K8S_VERSION?)"
  rm -rf "$KSRC"
  mv "$tree" "$KSRC"
  rm -rf "$work" "$apt/cache/archives"
}

build_binaries() {
  [[ -f $KSRC/Makefile ]] || die "no source tree in $KSRC"
  local what="" c
  for c in "${K8S_COMMANDS[@]}"; do what+="cmd/$c "; done
  patch_vendor
  mkdir -p "$KSRC/.go/src/k8s.io"
  ln -sfn ../../.. "$KSRC/.go/src/k8s.io/kubernetes"
  # CGO off: static binaries, as debian/rules builds them. GOPROXY=off: the
  # tree vendors everything; nothing may be fetched. The version (v1.20.2) is
  # stamped from the values `git archive` left in hack/lib/version.sh. The
  # build forces GOCACHE to _output/local/go/cache inside the tree, and the
  # tree stays in $KDIR: a rebuild after losing bin/ is warm (~30 s).
  log "building ${K8S_COMMANDS[*]} (~5 min cold on 2 cores, ~20 s with a warm Go cache; log: $KDIR/build.log)"
  if ! (cd "$KSRC" && env GOPATH="$KSRC/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS= \
    make WHAT="${what% }") >"$KDIR/build.log" 2>&1; then
    tail_log "$KDIR/build.log"
    die "kubernetes build failed"
  fi
  # Copy out of _output: rebuilding over a running binary fails, and the
  # cache must only ever contain a complete set (bin/ appears atomically).
  rm -rf "$KBIN.tmp"
  mkdir -p "$KBIN.tmp"
  for c in "${K8S_COMMANDS[@]}"; do
    cp "$KSRC/_output/bin/$c" "$KBIN.tmp/$c"
  done
  # The pause binary for the sandbox image, from the same tree.
  gcc -Os -static -o "$KBIN.tmp/pause" "$KSRC/build/pause/linux/pause.c" >>"$KDIR/build.log" 2>&1 ||
    die "compiling pause.c failed (see $KDIR/build.log)"
  strip "$KBIN.tmp/pause" 2>/dev/null || true
  echo "$BUILD_REV" >"$KBIN.tmp/.build-rev"
  rm -rf "$KBIN"
  mv "$KBIN.tmp" "$KBIN"
}
