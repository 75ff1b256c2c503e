//! LDAP sign-in against a real OpenLDAP server (Debian's `slapd`, configured and started here
//! on private ports, with StartTLS and LDAPS under a test CA): users found by the service
//! account and bound with their own password, group DNs as project members, the admin group,
//! a user the filter excludes (disabled), group changes seen at the next sign-in, Harbor's
//! `/ldap` endpoints, a CLI secret for an LDAP user, and an unreachable server (a clear error;
//! the local admin still signs in).

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::*;

const SUFFIX: &str = "dc=berth,dc=test";
const ROOT_PW: &str = "Slapd-Root-Pw-1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A slapd of its own: plain LDAP (StartTLS offered) and LDAPS, killed on drop.
struct Slapd {
    ldap: String,
    ldaps: String,
    ca: PathBuf,
    dir: PathBuf,
    _child: Child,
}

impl Slapd {
    async fn start(dir: &Path) -> Slapd {
        // A CA and a server certificate for 127.0.0.1.
        let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
d = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn): return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder().subject_name(name("ldap test CA")).issuer_name(name("ldap test CA"))
      .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
      .not_valid_after(now + datetime.timedelta(days=30)).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(2).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256()))
open(f"{d}/ca.pem", "wb").write(ca.public_bytes(serialization.Encoding.PEM))
open(f"{d}/server.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(f"{d}/server.key", "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
"#;
        run_ok(Command::new("python3").arg("-c").arg(script).arg(dir)).await;
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
             pidfile {d}/slapd.pid\nTLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\n\
             TLSCertificateKeyFile {d}/server.key\ndatabase mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\n\
             rootdn \"cn=admin,{SUFFIX}\"\nrootpw {ROOT_PW}\ndirectory {d}/db\noverlay memberof\n",
            d = dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).unwrap();
        let (p1, p2) = (free_port(), free_port());
        let (ldap, ldaps) = (format!("ldap://127.0.0.1:{p1}"), format!("ldaps://127.0.0.1:{p2}"));
        let slapd = if Path::new("/usr/sbin/slapd").exists() { "/usr/sbin/slapd" } else { "slapd" };
        let child = Command::new(slapd)
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .args(["-h", &format!("{ldap}/ {ldaps}/"), "-d", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("slapd (Debian's slapd, installed by .ci/install.sh)");
        let s = Slapd { ldap, ldaps, ca: dir.join("ca.pem"), dir: dir.to_owned(), _child: child };
        eventually("slapd to answer", async || {
            let out = Command::new("ldapsearch")
                .args(["-x", "-H", &s.ldap, "-b", "", "-s", "base"])
                .output()
                .await
                .map_err(|e| e.to_string())?;
            if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
        })
        .await;
        s.ldif(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Berth Test\ndc: berth\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: cn=service,{SUFFIX}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: service\nuserPassword: Service-Pw-1\n\n\
             {}\n{}\n{}\n\
             dn: cn=developers,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: developers\nmember: uid=alice,ou=people,{SUFFIX}\n\n\
             dn: cn=registry-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: registry-admins\nmember: uid=bob,ou=people,{SUFFIX}\n",
            person("alice", "Alice Liddell", "active"),
            person("bob", "Bob Builder", "active"),
            person("carol", "Carol Gone", "disabled"),
        ))
        .await;
        s
    }

    async fn ldif(&self, ldif: &str) {
        let path = self.dir.join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        run_ok(
            Command::new("ldapadd")
                .args(["-x", "-H", &self.ldap, "-D", &format!("cn=admin,{SUFFIX}"), "-w", ROOT_PW, "-f"])
                .arg(&path),
        )
        .await;
    }

    async fn modify(&self, ldif: &str) {
        let path = self.dir.join("modify.ldif");
        std::fs::write(&path, ldif).unwrap();
        run_ok(
            Command::new("ldapmodify")
                .args(["-x", "-H", &self.ldap, "-D", &format!("cn=admin,{SUFFIX}"), "-w", ROOT_PW, "-f"])
                .arg(&path),
        )
        .await;
    }
}

fn person(uid: &str, name: &str, state: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name}\n\
         mail: {uid}@berth.test\nemployeeType: {state}\nuserPassword: {}-Ldap-Pw-1\n",
        capitalized(uid)
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn ldap_config(c: &mut berth_config::Config, url: &str, starttls: bool, ca: &Path) {
    c.ldap = Some(berth_config::LdapSettings {
        url: url.to_owned(),
        starttls,
        ca_file: Some(ca.to_owned()),
        bind_dn: format!("cn=service,{SUFFIX}"),
        bind_password: berth_config::Secret::new("Service-Pw-1"),
        base_dn: format!("ou=people,{SUFFIX}"),
        user_filter: "(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))".into(),
        uid_attribute: "uid".into(),
        group_base_dn: Some(format!("ou=groups,{SUFFIX}")),
        group_filter: "(objectClass=groupOfNames)".into(),
        group_membership_attribute: "member".into(),
        group_name_attribute: "cn".into(),
        group_admin_dn: Some(format!("cn=registry-admins,ou=groups,{SUFFIX}")),
        timeout: Duration::from_secs(5),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_users_sign_in_with_groups_as_project_members() {
    let tmp = tempfile::tempdir().unwrap();
    let slapd = Slapd::start(tmp.path()).await;
    let (url, ca) = (slapd.ldap.clone(), slapd.ca.clone());
    let s = TestServer::start_with(|c| ldap_config(c, &url, true, &ca)).await;
    s.project("genomics", false).await;
    s.push_image("genomics/bwa", "v1").await;
    // The developers group, a user group of Harbor's (by its DN, checked in LDAP), is a
    // developer of the project.
    let dn = format!("cn=Developers,ou=groups,{SUFFIX}");
    let r = s.api(Method::POST, "/usergroups", Some(json!({"group_type": 1, "ldap_group_dn": dn}))).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let gid: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let g: Value = s.api(Method::GET, &format!("/usergroups/{gid}"), None).await.json().await.unwrap();
    assert_eq!((g["group_name"].as_str(), g["group_type"].as_i64()), (Some("Developers"), Some(1)), "{g}");
    let r = s
        .api(Method::POST, "/usergroups", Some(json!({"group_type": 1, "ldap_group_dn": format!("cn=nope,{SUFFIX}")})))
        .await;
    let e = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(e.to_string().contains("LDAP has no group"), "{e}");
    let body = json!({"role_id": 2, "member_group": {"id": gid}});
    let r = s.api(Method::POST, "/projects/genomics/members", Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);

    // Alice signs in (StartTLS, the CA from ca_file): a developer through her group.
    let alice = client_as("alice", "Alice-Ldap-Pw-1");
    let r = alice.get(s.url("/v2/genomics/bwa/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = alice.get(s.url("/api/v2.0/users/current")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (me["username"].as_str(), me["email"].as_str(), me["realname"].as_str()),
        (Some("alice"), Some("alice@berth.test"), Some("Alice Liddell"))
    );
    assert_eq!(me["sysadmin_flag"], false);
    // Wrong password, unknown user, the disabled one, an empty password: refused alike.
    for (u, p) in [("alice", "wrong"), ("nobody", "Whatever-1"), ("carol", "Carol-Ldap-Pw-1"), ("alice", "")] {
        let r = client_as(u, p).get(s.url("/api/v2.0/users/current")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{u}");
    }
    // Bob is in the admin group: a system administrator.
    let bob: Value = client_as("bob", "Bob-Ldap-Pw-1")
        .get(s.url("/api/v2.0/users/current"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob["sysadmin_flag"], true, "{bob}");

    // Alice leaves the group: her next sign-in no longer reaches the project.
    slapd.modify(&format!("dn: cn=developers,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,{SUFFIX}\n-\ndelete: member\nmember: uid=alice,ou=people,{SUFFIX}\n")).await;
    let fresh = client_as("alice", "Alice-Ldap-Pw-1");
    eventually("alice's group change to apply", async || {
        let r = fresh.get(s.url("/v2/genomics/bwa/manifests/v1")).send().await.unwrap();
        if r.status() == StatusCode::OK { Err("still a member".to_owned()) } else { Ok(()) }
    })
    .await;

    // A CLI secret for an LDAP user, used by a real client.
    let r = alice
        .put(s.url(&format!("/api/v2.0/users/{}/cli_secret", me["user_id"])))
        .json(&json!({"secret": "Alice-Cli-Secret-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let r = client_as("alice", "Alice-Cli-Secret-1").get(s.url("/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Harbor's /ldap endpoints (system administrators).
    let ping: Value = s.api(Method::POST, "/ldap/ping", None).await.json().await.unwrap();
    assert_eq!(ping["success"], true, "{ping}");
    let users: Value = s.api(Method::GET, "/ldap/users/search?username=a", None).await.json().await.unwrap();
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert!(names.contains(&"alice") && !names.contains(&"carol"), "{users}");
    let groups: Value = s.api(Method::GET, "/ldap/groups/search?groupname=dev", None).await.json().await.unwrap();
    assert_eq!(groups[0]["ldap_group_dn"], format!("cn=developers,ou=groups,{SUFFIX}"), "{groups}");
    let r = s.api(Method::POST, "/ldap/users/import", Some(json!({"ldap_uid_list": ["bob", "nobody"]}))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let failed: Value = r.json().await.unwrap();
    assert_eq!(failed[0]["uid"], "nobody", "{failed}");
    let refused = client_as("alice", "Alice-Ldap-Pw-1")
        .get(s.url("/api/v2.0/ldap/users/search?username=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    s.stop().await;

    // LDAPS too; and a server that cannot be reached: a clear 503, the local admin still works.
    let (ldaps, ca) = (slapd.ldaps.clone(), slapd.ca.clone());
    let s = TestServer::start_with(|c| ldap_config(c, &ldaps, false, &ca)).await;
    let r = client_as("bob", "Bob-Ldap-Pw-1").get(s.url("/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
    let down = format!("ldap://127.0.0.1:{}", free_port());
    let s = TestServer::start_with(|c| ldap_config(c, &down, false, &ca)).await;
    let r = client_as("bob", "Bob-Ldap-Pw-1").get(s.url("/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = r.text().await.unwrap();
    assert!(text.contains("LDAP server") && text.contains("cannot be reached"), "{text}");
    // The registry API and its clients read the same.
    let r = client_as("bob", "Bob-Ldap-Pw-1").get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("LDAP server"));
    assert_eq!(s.api(Method::GET, "/users/current", None).await.status(), StatusCode::OK, "the local admin");
    let ping: Value = s.api(Method::POST, "/ldap/ping", None).await.json().await.unwrap();
    assert_eq!(ping["success"], false);
    drop(slapd);
    s.stop().await;
}
