//! SBOMs of an inventory: CycloneDX 1.6 JSON and SPDX 2.3 JSON.
//!
//! Both list the image as the described component and every package with its name, version,
//! PURL, licence (where recorded), and, as properties or comments, the layer and file it came
//! from and (for OS packages) its source package. The time and the document's unique id are
//! passed in, so the output is a pure function of its inputs.

use serde_json::{Value, json};

use crate::inventory::{Evidence, Inventory, Kind};

/// The image an SBOM describes.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Repository name (`proj/app`).
    pub repository: &'a str,
    /// Manifest digest.
    pub digest: &'a str,
    /// Digests of the layers, in order (index = `InstalledPackage::layer`).
    pub layers: &'a [String],
}

/// Document metadata.
#[derive(Debug, Clone)]
pub struct DocInfo<'a> {
    /// Creation time, RFC 3339 UTC (`2026-12-01T10:00:00Z`).
    pub created: &'a str,
    /// A UUID for the document (serial number, SPDX namespace).
    pub uuid: &'a str,
    /// The generating tool's version.
    pub tool_version: &'a str,
}

/// CycloneDX 1.6 JSON.
pub fn cyclonedx(inv: &Inventory, s: &Subject<'_>, d: &DocInfo<'_>) -> Value {
    let mut components = Vec::new();
    if let Some(os) = &inv.os {
        components.push(json!({
            "type": "operating-system", "bom-ref": "os", "name": os.id, "version": os.version_id,
            "description": os.pretty_name,
        }));
    }
    for (i, p) in inv.packages.iter().enumerate() {
        let mut props = vec![
            json!({"name": "berth:package:type", "value": p.kind.purl_type()}),
            json!({"name": "berth:layer:index", "value": p.layer.to_string()}),
            json!({"name": "berth:file", "value": p.path}),
        ];
        if let Some(l) = s.layers.get(p.layer) {
            props.push(json!({"name": "berth:layer:digest", "value": l}));
        }
        if let Some(src) = &p.source_name {
            props.push(json!({"name": "berth:source:name", "value": src}));
        }
        if let Some(v) = &p.source_version {
            props.push(json!({"name": "berth:source:version", "value": v}));
        }
        if p.evidence == Evidence::Lockfile {
            props.push(json!({"name": "berth:evidence", "value": "lockfile"}));
        }
        if let Some(r) = &p.revision {
            props.push(json!({"name": "berth:vcs:revision", "value": r}));
        }
        let (group, name) = match (p.kind, p.name.split_once(':')) {
            (Kind::Maven, Some((g, a))) => (Some(g), a),
            _ => (None, p.name.as_str()),
        };
        let mut c = json!({
            "type": "library", "bom-ref": format!("pkg-{i}"), "name": name,
            "version": p.version, "purl": inv.purl(p), "properties": props,
        });
        if let Some(g) = group {
            c["group"] = json!(g);
        }
        if let Some(l) = &p.license {
            c["licenses"] = json!([{"license": {"name": l}}]);
        }
        components.push(c);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", d.uuid),
        "version": 1,
        "metadata": {
            "timestamp": d.created,
            "tools": {"components": [{"type": "application", "name": "berth", "version": d.tool_version}]},
            "component": {
                "type": "container", "bom-ref": "image", "name": s.repository, "version": s.digest,
                "purl": format!("pkg:oci/{}@{}", s.repository.rsplit('/').next().unwrap_or(s.repository), s.digest),
            },
        },
        "components": components,
    })
}

fn spdx_id(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect()
}

/// SPDX 2.3 JSON.
pub fn spdx(inv: &Inventory, s: &Subject<'_>, d: &DocInfo<'_>) -> Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": s.repository,
        "versionInfo": s.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "copyrightText": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
    })];
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"}),
    ];
    if let Some(os) = &inv.os {
        packages.push(json!({
            "SPDXID": "SPDXRef-OperatingSystem", "name": os.id, "versionInfo": os.version_id,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": false, "primaryPackagePurpose": "OPERATING_SYSTEM",
            "copyrightText": "NOASSERTION", "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
        }));
        relationships.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-OperatingSystem"}));
    }
    for (i, p) in inv.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", spdx_id(p.kind.purl_type()));
        let mut comment = format!("found in {} (layer {}", p.path, p.layer);
        if let Some(l) = s.layers.get(p.layer) {
            comment.push_str(&format!(", {l}"));
        }
        comment.push(')');
        if p.evidence == Evidence::Lockfile {
            comment.push_str("; named by a lock file, not installed metadata");
        }
        if let Some(r) = &p.revision {
            comment.push_str(&format!("; built from revision {r}"));
        }
        if let Some(src) = &p.source_name {
            comment.push_str(&format!("; source package {src} {}", p.source_version.as_deref().unwrap_or(&p.version)));
        }
        let mut pk = json!({
            "SPDXID": id, "name": p.name, "versionInfo": p.version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false, "copyrightText": "NOASSERTION", "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION", "primaryPackagePurpose": "LIBRARY", "comment": comment,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": inv.purl(p)}],
        });
        if let Some(l) = &p.license {
            pk["licenseComments"] = json!(format!("declared licence: {l}"));
        }
        if let Some(src) = &p.source_name
            && src != &p.name
        {
            pk["sourceInfo"] = json!(format!("built from source package {src}"));
        }
        packages.push(pk);
        relationships
            .push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", s.repository, s.digest),
        "documentNamespace": format!("https://spdx.berth.invalid/{}/{}", s.repository, d.uuid),
        "creationInfo": {"created": d.created, "creators": [format!("Tool: berth-{}", d.tool_version)]},
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Evidence, InstalledPackage, OsRelease};

    #[test]
    fn both_formats_list_every_package() {
        let inv = Inventory {
            os: Some(OsRelease { id: "debian".into(), version_id: "12".into(), pretty_name: "Debian 12".into() }),
            packages: vec![
                InstalledPackage {
                    kind: Kind::Deb,
                    name: "libssl3".into(),
                    version: "3.0.11-1~deb12u1".into(),
                    source_name: Some("openssl".into()),
                    source_version: None,
                    layer: 0,
                    path: "var/lib/dpkg/status".into(),
                    arch: Some("amd64".into()),
                    license: None,
                    evidence: Evidence::Lockfile,
                    revision: None,
                },
                InstalledPackage {
                    kind: Kind::Maven,
                    name: "org.apache.logging.log4j:log4j-core".into(),
                    version: "2.14.1".into(),
                    source_name: None,
                    source_version: None,
                    layer: 1,
                    path: "app.jar!/META-INF/maven/x/pom.properties".into(),
                    arch: None,
                    license: Some("Apache-2.0".into()),
                    evidence: Evidence::Installed,
                    revision: Some("0123abc".into()),
                },
            ],
            unreadable: 0,
        };
        let layers = vec!["sha256:aa".to_owned(), "sha256:bb".to_owned()];
        let s = Subject { repository: "proj/app", digest: "sha256:cc", layers: &layers };
        let d = DocInfo {
            created: "2026-12-01T00:00:00Z",
            uuid: "5f1c3b6e-0000-4000-8000-000000000001",
            tool_version: "0.1.0",
        };
        let c = cyclonedx(&inv, &s, &d);
        assert_eq!(c["specVersion"], "1.6");
        assert_eq!(c["components"].as_array().unwrap().len(), 3);
        assert_eq!(c["components"][1]["purl"], "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12");
        assert_eq!(c["components"][2]["group"], "org.apache.logging.log4j");
        assert_eq!(c["components"][2]["purl"], "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1");
        let prop = |i: usize, name: &str| {
            c["components"][i]["properties"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["value"].clone())
        };
        assert_eq!(prop(1, "berth:evidence"), Some(serde_json::json!("lockfile")));
        assert_eq!(prop(2, "berth:evidence"), None);
        assert_eq!(prop(2, "berth:vcs:revision"), Some(serde_json::json!("0123abc")));
        let x = spdx(&inv, &s, &d);
        assert!(x["packages"][2]["comment"].as_str().unwrap().contains("named by a lock file"));
        assert!(x["packages"][3]["comment"].as_str().unwrap().contains("built from revision 0123abc"));
        assert_eq!(x["packages"].as_array().unwrap().len(), 4);
        assert_eq!(x["relationships"].as_array().unwrap().len(), 4);
        assert_eq!(x["packages"][2]["SPDXID"], "SPDXRef-Package-deb-0");
        assert!(x["packages"][2]["comment"].as_str().unwrap().contains("source package openssl"));
    }
}
