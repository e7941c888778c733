# shellcheck shell=bash
# OCI images without a registry: umoci builds an image layout, we tar it, and
# `ctr images import --base-name` puts it into containerd's k8s.io namespace
# (the one the CRI reads). Every image is named shellcar.local/NAME:TAG, so a
# pod can never accidentally pull from anywhere (and pods use
# imagePullPolicy: Never anyway).
#
# Expects: KBIN, IMAGES, CTR_SOCK, plus lib/common.sh.

IMAGE_PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

ctrk() { timeout 120 ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

# Capture first: `ctr ... | grep -q` under pipefail fails at random when grep
# exits before ctr has written everything (SIGPIPE).
image_present() {
  local refs
  refs=$(ctrk images ls -q 2>/dev/null) || return 1
  grep -Fxq -- "$1" <<<"$refs"
}

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

# oci_build TAG OUT_TAR FILL_FUNC [umoci config args...]: build a one-layer
# image whose rootfs FILL_FUNC populates (called with the rootfs path), and
# write the image layout, tagged with the bare TAG, to OUT_TAR.
oci_build() {
  local tag=$1 out=$2 fill=$3 tmp
  shift 3
  mkdir -p "$(dirname "$out")"
  # A failed build leaves this behind (we exit at once); build_image_tars
  # and load_image sweep build.* first.
  tmp=$(mktemp -d "$(dirname "$out")/build.XXXXXX")
  umoci init --layout "$tmp/oci"
  umoci new --image "$tmp/oci:$tag"
  umoci unpack --image "$tmp/oci:$tag" "$tmp/bundle" >/dev/null
  "$fill" "$tmp/bundle/rootfs"
  umoci repack --image "$tmp/oci:$tag" "$tmp/bundle"
  umoci config --image "$tmp/oci:$tag" --config.env "$IMAGE_PATH_ENV" "$@"
  umoci gc --layout "$tmp/oci"
  tar -C "$tmp/oci" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

# Minimal account databases; nsswitch.conf so glibc's getpwnam reads them.
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

# load_image NAME:TAG BINARY: a one-binary image (e.g. the operator), with
# entrypoint the binary, running as uid 65532 by default.
fill_binary() {
  local root=$1
  copy_elf "$LOAD_BINARY" "$root" "/usr/local/bin/${LOAD_BINARY##*/}"
  write_etc "$root" 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin'
  install -d -m 0755 -o 65532 -g 65532 "$root/home/nonroot"
}

load_image() {
  local ref=$1 bin=$2 tag tmpdir
  [[ ${ref##*/} == ?*:?* ]] || die "load-image: expected NAME:TAG, got '$ref'"
  [[ -f $bin && -x $bin ]] || die "load-image: $bin is not an executable file"
  tag=${ref##*:}
  LOAD_BINARY=$(readlink -f "$bin")
  tmpdir=$(mktemp -d "$STATE/tmp/load.XXXXXX")
  oci_build "$tag" "$tmpdir/image.tar" fill_binary \
    --config.entrypoint "/usr/local/bin/${LOAD_BINARY##*/}" --config.user 65532:65532
  import_image "$ref" "$tmpdir/image.tar"
  rm -rf "$tmpdir"
  log "loaded $ref"
}
