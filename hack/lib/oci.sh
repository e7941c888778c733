# shellcheck shell=bash
# OCI images without Docker or a registry: umoci builds an image layout from a rootfs that
# a function fills, and we tar it. Used by hack/image (the operator's image, `make image`)
# and by e2e/cluster (the local cluster's pause, busybox and nginx images).
#
# The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...), which
# skopeo (`oci-archive:`), podman load and `ctr images import` read; with --docker-tag it
# also carries the manifest.json that `docker load` reads, as `docker save` writes it.
# index.json tags the image with a bare tag (org.opencontainers.image.ref.name, which
# `ctr images import --base-name NAME` completes to NAME:TAG); --name adds the full name
# that containerd, podman and Docker's containerd store give the image they load
# (io.containerd.image.name; ctr then ignores --base-name).
#
# Expects: die (print an error and exit).

OCI_PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# copy_elf SRC ROOTFS DEST: put the executable SRC at ROOTFS/DEST, plus every
# shared library ldd lists and the ELF interpreter, at the paths the dynamic
# loader will look for them. Mode 0755 everywhere: the image must work for a
# non-root user (uid 65532).
copy_elf() {
  local src=$1 root=$2 dest=$3 out lib
  install -D -m 0755 "$src" "$root$dest"
  out=$(ldd "$src" 2>&1) || true
  if grep -qE 'not a dynamic executable|statically linked' <<<"$out"; then
    return 0
  fi
  if grep -q 'not found' <<<"$out"; then
    die "ldd $src: libraries missing on this machine: $(grep 'not found' <<<"$out" | tr -s ' \t\n' ' ')"
  fi
  # "libx.so => /path (0x..)" and the interpreter "/lib64/ld-linux-x86-64.so.2 (0x..)".
  while read -r lib; do
    [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out")
}

# write_etc ROOTFS [PASSWD_LINE...]: minimal account databases (root, the given
# users, nobody) and an nsswitch.conf, so glibc's getpwnam reads them.
write_etc() {
  local root=$1
  shift
  mkdir -p "$root/etc" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  {
    echo 'root:x:0:0:root:/root:/bin/sh'
    printf '%s\n' "$@"
    echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin'
  } >"$root/etc/passwd"
  awk -F: '{ g = ($1 == "nobody") ? "nogroup" : $1; print g ":x:" $4 ":" }' "$root/etc/passwd" >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# oci_docker_manifest LAYOUT REPO:TAG: add the manifest.json of `docker save` (Docker's
# own load reads only that) next to index.json, for the layout's single image. The
# paths are those of the OCI blobs, so nothing is stored twice. containerd's importer
# prefers index.json when oci-layout is present, so ctr, podman and skopeo see the same
# image as without it.
oci_docker_manifest() {
  local layout=$1 ref=$2 manifest
  manifest=$(jq -er '.manifests | if length == 1 then .[0].digest else error("expected one image") end' \
    "$layout/index.json") || die "$layout/index.json: expected exactly one image"
  jq -c --arg ref "$ref" \
    '[{Config: ("blobs/" + (.config.digest | sub(":"; "/"))), RepoTags: [$ref],
       Layers: [.layers[].digest | "blobs/" + sub(":"; "/")]}]' \
    "$layout/blobs/${manifest/://}" >"$layout/manifest.json"
}

# oci_name LAYOUT NAME: give the layout's single image the full name NAME.
oci_name() {
  local layout=$1 name=$2 index
  index=$(jq -ec --arg name "$name" \
    'if (.manifests | length) == 1 then .manifests[0].annotations["io.containerd.image.name"] = $name
     else error("expected one image") end' "$layout/index.json") ||
    die "$layout/index.json: expected exactly one image"
  printf '%s\n' "$index" >"$layout/index.json"
}

# oci_build [--epoch SECONDS] [--name NAME] [--docker-tag REPO:TAG] TAG OUT_TAR FILL_FUNC
# [umoci config args...]: build a one-layer image whose rootfs FILL_FUNC populates (called
# with the rootfs path), and write the image layout, tagged with the bare TAG, to OUT_TAR.
# --epoch makes the build reproducible: every file's mtime, the creation times and the
# archive's own entries are set to it, so the same inputs give the same digests.
oci_build() {
  local epoch="" name="" docker_tag="" tag out fill tmp created=() tar_opts=()
  while [[ ${1:-} == --* ]]; do
    case $1 in
    --epoch) epoch=$2 ;;
    --name) name=$2 ;;
    --docker-tag) docker_tag=$2 ;;
    *) die "oci_build: unknown option $1" ;;
    esac
    shift 2
  done
  tag=$1 out=$2 fill=$3
  shift 3
  if [[ -n $epoch ]]; then
    local when
    when=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
    created=(--created "$when" --history.created "$when")
    tar_opts=(--sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=go+rX)
  fi
  mkdir -p "$(dirname "$out")"
  # A failed build leaves this behind (we exit at once); the callers sweep build.*
  # first.
  tmp=$(mktemp -d "$(dirname "$out")/build.XXXXXX")
  umoci init --layout "$tmp/oci"
  umoci new --image "$tmp/oci:$tag"
  umoci unpack --image "$tmp/oci:$tag" "$tmp/bundle" >/dev/null
  "$fill" "$tmp/bundle/rootfs"
  if [[ -n $epoch ]]; then
    find "$tmp/bundle/rootfs" -exec touch -h -d "@$epoch" {} +
    umoci repack --history.created "${created[1]}" --image "$tmp/oci:$tag" "$tmp/bundle"
  else
    umoci repack --image "$tmp/oci:$tag" "$tmp/bundle"
  fi
  umoci config --image "$tmp/oci:$tag" --config.env "$OCI_PATH_ENV" "${created[@]}" "$@"
  umoci gc --layout "$tmp/oci"
  [[ -z $name ]] || oci_name "$tmp/oci" "$name"
  [[ -z $docker_tag ]] || oci_docker_manifest "$tmp/oci" "$docker_tag"
  tar -C "$tmp/oci" "${tar_opts[@]}" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}
