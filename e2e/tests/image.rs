//! The operator's image: the archive `make image` writes (hack/image) is an OCI archive that
//! skopeo reads as registries will, and the `docker load` view of it is the same image; it
//! runs the operator as a non-root user with nothing but its own files; and it is the very
//! image the cluster runs, since e2e/deploy imports that archive (it records which in
//! `target/image/deployed`; `SHELLCAR_IMAGE_ARCHIVE` names another).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt as _;
use kube::api::Api;
use serde_json::Value;
use shellcar_e2e::Cluster;
use shellcar_e2e::cluster::{OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE};

/// The shellcar version every artefact carries (the workspace's, as the operator's).
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the image puts the operator, and the user it runs as (config/manager's too).
const ENTRYPOINT: &str = "/usr/local/bin/shellcar";
const USER: &str = "65532:65532";
/// The name the e2e overlay gives the operator's image in the local cluster.
const LOCAL_NAME: &str = "shellcar.local/shellcar:";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The archive e2e/deploy imported into the cluster.
fn deployed_archive() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SHELLCAR_IMAGE_ARCHIVE") {
        return Ok(path.into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo("target"), PathBuf::from);
    let record = target.join("image/deployed");
    let path = std::fs::read_to_string(&record).with_context(|| {
        format!(
            "{}: no record of the archive e2e/deploy imported; run e2e/deploy (make deploy) first",
            record.display()
        )
    })?;
    let path = PathBuf::from(path.trim());
    ensure!(
        path.is_file(),
        "{} (named in {}) is gone",
        path.display(),
        record.display()
    );
    Ok(path)
}

/// Runs `program args`; its stdout, or an error with everything it printed.
fn run(program: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("running {program} (is it installed? e2e/cluster up installs it)")
    })?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// `skopeo inspect ARGS... REF` as JSON.
fn skopeo(args: &[&str], reference: &str) -> Result<Value> {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    all.push(reference);
    let out = run("skopeo", &all)?;
    serde_json::from_slice(&out).with_context(|| format!("skopeo inspect {reference}: not JSON"))
}

/// The OCI name of the architecture this test (and the binary it checks) was built for.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What skopeo reads from the archive, as a registry would be given it.
struct Image {
    archive: PathBuf,
    /// The manifest's digest: what a registry names the image by.
    digest: String,
    manifest: Value,
    /// The config as stored, byte for byte.
    config_raw: Vec<u8>,
    config: Value,
}

impl Image {
    fn read() -> Result<Image> {
        let archive = deployed_archive()?;
        let oci = format!("oci-archive:{}", archive.display());
        let inspect = skopeo(&[], &oci)?;
        let digest = inspect["Digest"]
            .as_str()
            .context("skopeo inspect printed no Digest")?
            .to_owned();
        let manifest_raw = run("skopeo", &["inspect", "--raw", &oci])?;
        let config_raw = run("skopeo", &["inspect", "--config", "--raw", &oci])?;
        Ok(Image {
            manifest: serde_json::from_slice(&manifest_raw).context("the manifest is not JSON")?,
            config: serde_json::from_slice(&config_raw).context("the config is not JSON")?,
            config_raw,
            digest,
            archive,
        })
    }

    /// The image ID: the digest of the config, as the kubelet reports it.
    fn id(&self) -> Result<&str> {
        self.manifest["config"]["digest"]
            .as_str()
            .context("the manifest names no config")
    }
}

#[test]
fn skopeo_reads_the_archive_as_an_oci_image_of_this_version() -> Result<()> {
    let image = Image::read()?;
    let manifest = &image.manifest;
    assert_eq!(manifest["schemaVersion"], 2, "{manifest:#}");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().context("no layers")?;
    assert_eq!(layers.len(), 1, "one layer: {manifest:#}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.version"], VERSION);
    assert_eq!(annotations["org.opencontainers.image.title"], "shellcar");
    let source = annotations["org.opencontainers.image.source"]
        .as_str()
        .context("no source annotation")?;
    assert!(source.starts_with("https://"), "source: {source}");
    for key in [
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
        "org.opencontainers.image.licenses",
    ] {
        assert!(
            annotations[key].as_str().is_some_and(|v| !v.is_empty()),
            "no {key}: {annotations:#}"
        );
    }
    // The same as labels, for `docker inspect` and `podman inspect`.
    assert_eq!(
        image.config["config"]["Labels"]["org.opencontainers.image.version"],
        VERSION
    );
    Ok(())
}

#[test]
fn the_image_runs_the_operator_as_a_numeric_non_root_user() -> Result<()> {
    let image = Image::read()?;
    let config = &image.config;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], oci_architecture());
    let process = &config["config"];
    // Numeric, so that runAsNonRoot can check it without reading /etc/passwd.
    let user = process["User"].as_str().context("no User")?;
    assert_eq!(user, USER);
    let uid: u32 = user.split(':').next().unwrap_or(user).parse()?;
    assert_ne!(uid, 0, "the image runs as root");
    assert_eq!(process["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    assert_eq!(process["Cmd"], serde_json::json!(["run"]));
    Ok(())
}

#[test]
fn docker_load_reads_the_same_image() -> Result<()> {
    // `docker load` reads manifest.json (docker-archive), everything else index.json:
    // both must give the same config, hence the same image ID.
    let image = Image::read()?;
    let docker = format!("docker-archive:{}", image.archive.display());
    let config = run("skopeo", &["inspect", "--config", "--raw", &docker])?;
    assert!(
        config == image.config_raw,
        "docker-archive and oci-archive give different configs:\n{}\n{}",
        String::from_utf8_lossy(&config),
        String::from_utf8_lossy(&image.config_raw)
    );
    let manifest: Value = serde_json::from_slice(&run(
        "tar",
        &["-xOf", &image.archive.to_string_lossy(), "./manifest.json"],
    )?)?;
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!([format!("shellcar:{}", tag_of(&image.archive)?)])
    );
    Ok(())
}

#[test]
fn podman_ctr_and_docker_name_the_image_shellcar() -> Result<()> {
    // index.json: the full name podman, ctr and Docker's containerd store give the image
    // (one that names no registry), and the bare tag `ctr import --base-name` completes.
    let image = Image::read()?;
    let tag = tag_of(&image.archive)?;
    let index: Value = serde_json::from_slice(&run(
        "tar",
        &["-xOf", &image.archive.to_string_lossy(), "./index.json"],
    )?)?;
    let entries = index["manifests"]
        .as_array()
        .context("index.json lists no images")?;
    assert_eq!(entries.len(), 1, "{index:#}");
    assert_eq!(entries[0]["digest"], image.digest.as_str());
    let annotations = &entries[0]["annotations"];
    assert_eq!(
        annotations["io.containerd.image.name"],
        format!("localhost/shellcar:{tag}")
    );
    assert_eq!(
        annotations["org.opencontainers.image.ref.name"],
        tag.as_str()
    );
    Ok(())
}

/// The tag hack/image gives an archive: the version, `-debug` for a debug build.
fn tag_of(archive: &Path) -> Result<String> {
    let name = archive
        .file_stem()
        .and_then(|s| s.to_str())
        .context("archive without a name")?;
    let tag = name
        .strip_prefix("shellcar-")
        .with_context(|| format!("{name}: not an archive of hack/image"))?;
    ensure!(
        tag == VERSION || tag == format!("{VERSION}-debug"),
        "{name}: not version {VERSION}"
    );
    Ok(tag.to_owned())
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_binary_runs_as_its_user_with_only_the_images_files() -> Result<()> {
    // The layer unpacked alone, and the binary run in it (chroot) as 65532: every library
    // it needs is in the image, and that user can execute it.
    let image = Image::read()?;
    let layer = image.manifest["layers"][0]["digest"]
        .as_str()
        .context("no layer digest")?
        .replace(':', "/");
    let root = TempDir(std::env::temp_dir().join(format!("shellcar-image-{}", std::process::id())));
    std::fs::create_dir_all(&root.0)?;
    let root_path = root.0.to_string_lossy().into_owned();
    let archive = image.archive.to_string_lossy().into_owned();
    let unpack = format!("tar -xOf \"$1\" ./blobs/{layer} | tar -xz -C \"$2\"",);
    run("sh", &["-c", &unpack, "sh", &archive, &root_path])?;
    let passwd = std::fs::read_to_string(root.0.join("etc/passwd"))?;
    let uid = USER.split(':').next().unwrap_or(USER);
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(uid)),
        "/etc/passwd has no user {uid}:\n{passwd}"
    );
    let version = run(
        "chroot",
        &[
            &format!("--userspec={USER}"),
            &root_path,
            ENTRYPOINT,
            "--version",
        ],
    )?;
    assert_eq!(
        String::from_utf8_lossy(&version).trim(),
        format!("shellcar {VERSION}")
    );
    Ok(())
}

#[test]
fn config_manager_deploys_the_image_make_image_builds() -> Result<()> {
    let text = std::fs::read_to_string(repo("config/manager/deployment.yaml"))?;
    let deployment: Deployment = serde_yaml::from_str(&text)?;
    let image = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == "manager"))
        .and_then(|c| c.image)
        .context("config/manager has no manager container image")?;
    assert_eq!(image, format!("shellcar:{VERSION}"));
    Ok(())
}

#[tokio::test]
async fn the_cluster_runs_the_image_from_the_archive() -> Result<()> {
    let image = Image::read()?;
    let cluster = Cluster::connect().await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let deployment = deployments.get(OPERATOR_DEPLOYMENT).await?;
    let name = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == "manager"))
        .and_then(|c| c.image)
        .context("the operator Deployment has no manager image")?;
    // e2e/deploy names the image after its manifest digest.
    let short = image
        .digest
        .strip_prefix("sha256:")
        .and_then(|hex| hex.get(..12))
        .context("not a sha256 digest")?;
    assert_eq!(
        name,
        format!("{LOCAL_NAME}dev-{short}"),
        "the Deployment does not point at the image of {} (deployed from another checkout?)",
        image.archive.display()
    );
    let pods = cluster.operator_pods().await?;
    let mut checked = 0;
    for pod in &pods {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let Some(manager) = statuses.iter().find(|s| s.name == "manager") else {
            continue; // just created
        };
        if manager.image != name {
            continue; // a pod of an older ReplicaSet, on its way out
        }
        // The kubelet reports the image ID: the digest of the config in the archive.
        assert_eq!(
            manager.image_id,
            image.id()?,
            "pod {} runs another image than {}",
            pod.name_any(),
            image.archive.display()
        );
        checked += 1;
    }
    ensure!(checked > 0, "no operator pod runs {name} yet");
    Ok(())
}
