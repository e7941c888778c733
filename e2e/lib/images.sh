# shellcheck shell=bash
# OCI images without a registry: umoci builds an image layout, we tar it, and
# `ctr images import --base-name` puts it into containerd's k8s.io namespace
# (the one the CRI reads). Every image is named shellcar.local/NAME:TAG, so a
# pod can never accidentally pull from anywhere (and pods use
# imagePullPolicy: Never anyway). The packing itself (copy_elf, write_etc, oci_build) is
# hack/lib/oci.sh, shared with hack/image, which builds the operator's image.
#
# Expects: KBIN, IMAGES, CTR_SOCK, STATE, plus lib/common.sh and hack/lib/oci.sh.

# containerd 2.2's ctr warns on every call that cgroup v1 is deprecated: said once in
# docs/local-cluster.md instead.
ctrk() { timeout 120 "$RBIN/ctr" --address "$CTR_SOCK" --namespace k8s.io "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2); }

# Capture first: `ctr ... | grep -q` under pipefail fails at random when grep
# exits before ctr has written everything (SIGPIPE).
image_present() {
  local refs
  refs=$(ctrk images ls -q 2>/dev/null) || return 1
  grep -Fxq -- "$1" <<<"$refs"
}

fill_pause() {
  install -D -m 0755 "$KBIN/pause" "$1/pause"
}

fill_busybox() {
  local root=$1
  install -D -m 0755 /bin/busybox "$root/bin/busybox"
  chroot "$root" /bin/busybox --install -s /bin
  write_etc "$root"
}

fill_nginx() {
  local root=$1 deb=$1/../deb x
  mkdir -p "$deb"
  # `apt-get download` only fetches .debs into the current directory; it
  # changes nothing on the system. Refresh the lists once if they are stale.
  (cd "$deb" && { apt-get -qq download nginx nginx-common 2>/dev/null ||
    { apt-get -qq update && apt-get -qq download nginx nginx-common; }; }) ||
    die "apt-get download nginx nginx-common failed"
  x=$deb/x
  for f in "$deb"/*.deb; do dpkg-deb -x "$f" "$x"; done
  [[ -x $x/usr/sbin/nginx ]] || die "the nginx package has no /usr/sbin/nginx"
  copy_elf "$x/usr/sbin/nginx" "$root" /usr/sbin/nginx
  mkdir -p "$root/etc"
  cp -a "$x/etc/nginx" "$root/etc/nginx"
  mkdir -p "$root/etc/nginx/modules-enabled" "$root/etc/nginx/sites-enabled"
  # Debian's postinst would enable the default site and place the page.
  [[ -e $root/etc/nginx/sites-enabled/default ]] || ln -s ../sites-available/default "$root/etc/nginx/sites-enabled/default"
  sed -i 's/^worker_processes .*/worker_processes 1;/' "$root/etc/nginx/nginx.conf"
  grep -q '^worker_processes 1;' "$root/etc/nginx/nginx.conf" || die "could not set worker_processes in nginx.conf"
  mkdir -p "$root/var/www/html" "$root/var/lib/nginx" "$root/var/log/nginx" "$root/run"
  cp "$x/usr/share/nginx/html/index.html" "$root/var/www/html/index.html"
  # Logs go to the container's stdout/stderr, so `kubectl logs` shows them.
  ln -s /dev/stdout "$root/var/log/nginx/access.log"
  ln -s /dev/stderr "$root/var/log/nginx/error.log"
  write_etc "$root" 'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin'
  rm -rf "$deb"
}

# Built once into the cache; a fresh containerd store only needs the import.
build_image_tars() {
  local t
  mkdir -p "$IMAGES"
  rm -rf "$IMAGES"/build.* "$IMAGES"/*.tmp
  t=$IMAGES/pause-3.6.tar
  [[ -f $t ]] || oci_build 3.6 "$t" fill_pause --config.entrypoint /pause --config.user 65535:65535
  t=$IMAGES/busybox-1.36.tar
  [[ -f $t ]] || oci_build 1.36 "$t" fill_busybox --config.cmd sh
  t=$IMAGES/nginx-1.22.tar
  [[ -f $t ]] || oci_build 1.22 "$t" fill_nginx \
    --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' --config.exposedports 80/tcp
  return 0
}

# import_image NAME:TAG TAR: replace any image of that name. --base-name with
# the layout's bare tag gives exactly NAME:TAG; --index-name would also leave
# import-DATE and sha256: refs that confuse the CRI.
import_image() {
  local ref=$1 tar=$2
  ctrk images rm "$ref" >/dev/null 2>&1 || true
  ctrk images import --base-name "${ref%:*}" "$tar" >/dev/null || die "importing $tar as $ref failed"
  image_present "$ref" || die "$ref not present after import"
}

import_images() {
  local spec ref
  for spec in pause:3.6 busybox:1.36 nginx:1.22; do
    ref=shellcar.local/$spec
    if image_present "$ref"; then
      log "$ref already in containerd"
    else
      import_image "$ref" "$IMAGES/${spec/:/-}.tar"
    fi
  done
}

# load_image NAME:TAG FILE: import FILE into containerd as exactly NAME:TAG. FILE is an
# image archive holding one image (hack/image's, which e2e/deploy loads), imported as it
# is, so the cluster runs that very image (same manifest digest); or an executable,
# packed first as a one-binary image with entrypoint the binary, running as uid 65532.
fill_binary() {
  local root=$1
  copy_elf "$LOAD_BINARY" "$root" "/usr/local/bin/${LOAD_BINARY##*/}"
  write_etc "$root" 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin'
  install -d -m 0755 -o 65532 -g 65532 "$root/home/nonroot"
}

load_image() {
  local ref=$1 file=$2 tmpdir tar
  [[ ${ref##*/} == ?*:?* ]] || die "load-image: expected NAME:TAG, got '$ref'"
  [[ -f $file ]] || die "load-image: $file is not a file"
  tmpdir=$(mktemp -d "$STATE/tmp/load.XXXXXX")
  if tar -tf "$file" ./oci-layout >/dev/null 2>&1 || tar -tf "$file" oci-layout >/dev/null 2>&1; then
    import_archive "$ref" "$file" "$tmpdir"
  else
    [[ -x $file ]] || die "load-image: $file is neither an image archive nor an executable"
    LOAD_BINARY=$(readlink -f "$file")
    tar=$tmpdir/image.tar
    oci_build "${ref##*:}" "$tar" fill_binary \
      --config.entrypoint "/usr/local/bin/${LOAD_BINARY##*/}" --config.user 65532:65532
    import_image "$ref" "$tar"
  fi
  rm -rf "$tmpdir"
  log "loaded $ref"
}

# import_archive NAME:TAG TAR WORKDIR: import an archive holding one image, whatever its
# index.json names it, then name it NAME:TAG. ctr names the image after its
# io.containerd.image.name if it has one (hack/image's do), else BASE:TAG for the bare
# tag of org.opencontainers.image.ref.name; BASE is unique, so that no image someone else
# named is touched then. The import's own name is removed once NAME:TAG exists.
import_archive() {
  local ref=$1 tar=$2 work=$3 index base imported
  index=$(tar -xOf "$tar" ./index.json 2>/dev/null || tar -xOf "$tar" index.json) ||
    die "load-image: $tar has no index.json"
  base=shellcar.local/load-${work##*.}
  base=${base,,}
  imported=$(jq -er --arg base "$base" '.manifests | if length == 1 then .[0].annotations else error("not one image") end
    | .["io.containerd.image.name"] // ($base + ":" + .["org.opencontainers.image.ref.name"])' <<<"$index") ||
    die "load-image: $tar must hold exactly one named or tagged image"
  # containerd 2's --base-name also filters: an image whose name does not start with it
  # is skipped. A named image is imported by its own name.
  if [[ $imported == "$base:"* ]]; then
    ctrk images import --base-name "$base" "$tar" >/dev/null || die "importing $tar failed"
  else
    ctrk images import "$tar" >/dev/null || die "importing $tar failed"
  fi
  image_present "$imported" || die "$tar: no image $imported after import"
  if [[ $imported != "$ref" ]]; then
    ctrk images tag --force "$imported" "$ref" >/dev/null || die "tagging $imported as $ref failed"
    ctrk images rm "$imported" >/dev/null
  fi
  image_present "$ref" || die "$ref not present after import"
}
