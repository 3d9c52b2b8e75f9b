"""Offline checks of the lucid-sweep Helm chart, the Grafana dashboard and the Prometheus alert rules.

Run through scripts/check-deploy.sh, which installs the tools (helm-python-sdk, kubernetes-validate, yamllint,
pyyaml, jsonschema, pytest, and promtool from Debian's prometheus package) and calls pytest on this folder.

No cluster is involved. The chart is rendered with Helm v4's own engine (helm-python-sdk); the Prometheus
operator's CRDs are "present" when the render passes `api_versions` (see `render`).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from helm_python import _native
from yamllint import linter as yamllint_linter
from yamllint.config import YamlLintConfig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lucid-sweep"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
BAD_VALUES = ROOT / "deploy" / "tests" / "values"
CRD_SCHEMAS = ROOT / "deploy" / "tests" / "schemas"
DASHBOARD = ROOT / "deploy" / "grafana" / "lucid-sweep.json"
RULES = ROOT / "deploy" / "prometheus" / "lucid-alerts.yaml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "lucid-alerts.test.yaml"
KUBE_VERSION = "1.30.0"
RELEASE = "lucid-sweep"
NAMESPACE = "lucid"
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
# Kinds kubernetes-validate has no schema for: checked against the minimal schemas in deploy/tests/schemas/.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}
WORKLOAD_KINDS = ("Deployment", "Job", "Pod")


# ------------------------------------------------------------------------------------------ helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def render(
    values: dict[str, Any] | None = None, *, api_versions: list[str] | None = None
) -> dict[str, str]:
    """Renders the chart offline with Helm's engine (schema validation included).

    helm-python-sdk 0.2.2's `Chart.render` exposes name/namespace/revision/is_install/is_upgrade only, but the
    C ABI underneath (`helm_render`) also takes `api_versions` and `kube_version` (the `helm template
    --api-versions/--kube-version` options); `test_render_honours_api_versions` proves it is not ignored.
    """
    with helm.Chart.load(CHART) as chart:
        if api_versions is None:
            return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
        opts = {
            "name": RELEASE,
            "namespace": NAMESPACE,
            "api_versions": api_versions,
            "kube_version": f"v{KUBE_VERSION}",
        }
        raw = _native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts))
        return json.loads(raw)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__source__", path)
                docs.append(doc)
    return docs


def strip_source(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__source__"}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["spec"]
    return doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(node, list):
        return [kv for n, v in enumerate(node) for kv in flatten(v, f"{prefix}[{n}]")]
    return [(prefix, node)]


def merged_values(values: dict[str, Any] | None = None) -> dict[str, Any]:
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values or {})


def values_schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


DEFAULT_VALUES = load_yaml(CHART / "values.yaml")
FULL = load_yaml(FULL_VALUES)
ALL_ON = {"api_versions": [PROMETHEUS_OPERATOR_API, "keda.sh/v1alpha1"]}


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return manifests(render({}))


@pytest.fixture(scope="module")
def full_docs() -> list[dict[str, Any]]:
    return manifests(render(FULL, **ALL_ON))


RENDERS = {
    "default": lambda: render({}),
    "default+crds": lambda: render({}, **ALL_ON),
    "full": lambda: render(FULL, **ALL_ON),
    "full-no-crds": lambda: render(FULL),
}


# ------------------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("values_name", ["default", "full"])
def test_helm_lint_strict(values_name: str) -> None:
    values = {} if values_name == "default" else FULL
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["total_charts_linted"] == 1
    assert not report["errors"], report["errors"]
    assert not problems, problems


def test_yamllint() -> None:
    config = YamlLintConfig(
        "extends: default\n"
        "rules:\n"
        "  line-length: {max: 140}\n"
        "  document-start: disable\n"
        "  truthy: {check-keys: false}\n"
        "  comments: {min-spaces-from-content: 1}\n"
    )
    files = [
        CHART / "Chart.yaml",
        CHART / "values.yaml",
        *sorted((CHART / "ci").glob("*.yaml")),
        *sorted(BAD_VALUES.glob("*.yaml")),
        RULES,
        RULES_TEST,
        CHART / "rules" / "lucid-alerts.yaml",
    ]
    problems = []
    for path in files:
        for p in yamllint_linter.run(path.read_text(), config, str(path)):
            problems.append(f"{path.relative_to(ROOT)}:{p.line}:{p.column}: {p.level}: {p.message}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------ render + validate


@pytest.mark.parametrize("case", sorted(RENDERS))
def test_manifests_validate(case: str, tmp_path: Path) -> None:
    """Built-in kinds: `kubernetes-validate --strict -k 1.30.0`. CRD kinds: minimal JSON schemas."""
    docs = manifests(RENDERS[case]())
    assert docs
    builtin, crds = [], []
    for doc in docs:
        (crds if (doc["apiVersion"], doc["kind"]) in CRD_KINDS else builtin).append(doc)
    files = []
    for n, doc in enumerate(builtin):
        path = tmp_path / f"{n:02d}-{doc['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(strip_source(doc)))
        files.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSION, "--quiet", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "WARN" not in proc.stdout, proc.stdout + proc.stderr
    for doc in crds:
        schema = json.loads((CRD_SCHEMAS / CRD_KINDS[(doc["apiVersion"], doc["kind"])]).read_text())
        jsonschema.Draft7Validator(schema).validate(strip_source(doc))
    if crds:
        kinds = sorted({d["kind"] for d in crds})
        print(f"note: {', '.join(kinds)} validated against deploy/tests/schemas/ (no upstream schema offline)")


def test_render_honours_api_versions() -> None:
    """The Prometheus-operator objects need both the values flag and the CRDs being served."""
    with_crds = manifests(render(FULL, **ALL_ON))
    without = manifests(render(FULL))
    monitoring = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert monitoring <= {d["kind"] for d in with_crds}
    assert not monitoring & {d["kind"] for d in without}
    flags_off = copy.deepcopy(FULL)
    for key in ("serviceMonitor", "podMonitor", "prometheusRule"):
        flags_off["metrics"][key]["enabled"] = False
    assert not monitoring & {d["kind"] for d in manifests(render(flags_off, **ALL_ON))}


# ------------------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("case", ["default", "full"])
def test_worker_deployment(case: str, default_docs, full_docs) -> None:
    docs = default_docs if case == "default" else full_docs
    values = DEFAULT_VALUES if case == "default" else FULL
    worker = values["worker"]
    deploy = one(docs, "Deployment", "-worker")
    spec = pod_spec(deploy)
    (container,) = spec["containers"]

    assert container["resources"]["limits"]["nvidia.com/gpu"] == worker["gpusPerPod"]
    assert spec["terminationGracePeriodSeconds"] >= worker["drainTimeoutSeconds"] + 30
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == worker["metricsPort"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["args"][container["args"].index("--listen") + 1] == f"0.0.0.0:{worker['metricsPort']}"
    assert container["args"][0] == "serve"
    assert str(worker["drainTimeoutSeconds"]) in container["args"]

    assert spec.get("nodeSelector", {}) == worker["nodeSelector"]
    assert spec.get("tolerations", []) == worker["tolerations"]
    assert spec.get("affinity", {}) == worker["affinity"]
    for key, quantity in worker["resources"]["requests"].items():
        assert container["resources"]["requests"][key] == quantity

    keda = values["keda"]["enabled"]
    assert ("replicas" in deploy["spec"]) is not keda, "replicas must be left to KEDA when it scales"


def test_models_from_pvc_and_s3(default_docs, full_docs) -> None:
    # default: S3 prefix, no volume
    spec = pod_spec(one(default_docs, "Deployment", "-worker"))
    assert "models" not in {v["name"] for v in spec["volumes"]}
    toml = spec_toml(default_docs)
    prefix = DEFAULT_VALUES["models"]["s3"]["prefix"]
    assert toml["models"] == {s: f"{prefix}/{s}" for s in DEFAULT_VALUES["models"]["seeds"]}

    # full: a read-only claim in the workers and the coordinator pods, one seed from S3
    toml = spec_toml(full_docs)
    pvc = FULL["models"]["pvc"]
    for doc in full_docs:
        if doc["kind"] in WORKLOAD_KINDS:
            volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
            assert volumes["models"]["persistentVolumeClaim"] == {"claimName": pvc["existingClaim"], "readOnly": True}
            mounts = {m["name"]: m for c in pod_spec(doc)["containers"] for m in c["volumeMounts"]}
            assert mounts["models"]["mountPath"] == pvc["mountPath"]
            assert mounts["models"]["readOnly"] is True
    assert toml["models"]["training_seed_01"] == "/models/training_seed_01"
    assert toml["models"]["training_seed_03"] == FULL["models"]["locations"]["training_seed_03"]

    with pytest.raises(helm.HelmError, match="existingClaim"):
        render({"models": {"source": "pvc"}})


def spec_toml(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap", "-spec")
    return tomllib.loads(cm["data"]["sweep.toml"])


@pytest.mark.parametrize("case", ["default", "full"])
def test_sweep_spec_configmap(case: str, default_docs, full_docs) -> None:
    docs = default_docs if case == "default" else full_docs
    values = DEFAULT_VALUES if case == "default" else FULL
    sweep = values["sweep"]
    toml = spec_toml(docs)
    assert toml["run_id"] == sweep["runId"]
    assert toml["layers"] == sweep["layers"]
    assert toml["channels"] == sweep["channels"]
    assert toml.get("channels_per_layer", {}) == sweep["channelsPerLayer"]
    render_ = toml["render"]
    assert render_["steps"] == sweep["render"]["steps"] and isinstance(render_["steps"], int)
    assert isinstance(render_["lr"], float) and render_["lr"] == float(sweep["render"]["lr"])
    assert render_["run_seed"] == sweep["render"]["runSeed"]
    assert toml["storage"]["bucket"] == sweep["storage"]["bucket"]
    assert toml["storage"]["path_style"] is sweep["storage"]["pathStyle"]
    assert toml["queue"]["tasks"] == sweep["queue"]["tasks"]
    assert toml["queue"]["delivery_limit"] == sweep["queue"]["deliveryLimit"]
    assert "@" not in toml["queue"]["uri"], "no credentials in the spec"
    assert "credentials_file" not in toml["storage"] and "uri_file" not in toml["queue"]
    # mounted at /etc/lucid/sweep.toml in every workload
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            for c in pod_spec(doc)["containers"]:
                mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
                assert mounts["/etc/lucid/sweep.toml"]["subPath"] == "sweep.toml", doc["metadata"]["name"]
                assert "/etc/lucid/sweep.toml" in c["args"]


@pytest.mark.parametrize("case", ["default", "full"])
def test_credentials_only_from_secrets(case: str, default_docs, full_docs) -> None:
    docs = default_docs if case == "default" else full_docs
    values = DEFAULT_VALUES if case == "default" else FULL
    assert not by_kind(docs, "Secret"), "the chart must not create Secrets"
    expected = {
        "LUCID_AMQP_URI": (values["amqp"]["existingSecret"], values["amqp"]["uriKey"]),
        "LUCID_S3_ACCESS_KEY_ID": (values["s3"]["existingSecret"], values["s3"]["accessKeyIdKey"]),
        "LUCID_S3_SECRET_ACCESS_KEY": (values["s3"]["existingSecret"], values["s3"]["secretAccessKeyKey"]),
    }
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    assert workloads
    for doc in workloads:
        for c in pod_spec(doc)["containers"]:
            env = env_of(c)
            for name, (secret, key) in expected.items():
                assert "value" not in env[name], f"{name} must come from a Secret"
                assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    # no credential-looking value anywhere in the values (comments may show the URI format)
    for key, value in flatten(values):
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", str(value)), f"credentials in {key}"
        assert not re.search(r"(?i)(password|secret_?access_?key|access_?key_?id)$", key) or value == "", key


def test_security_context_everywhere(full_docs, default_docs) -> None:
    for doc in [*default_docs, *full_docs]:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            assert c["securityContext"]["runAsNonRoot"] is True
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert "resources" in c


@pytest.mark.parametrize("case", ["default", "full"])
def test_standard_labels(case: str, default_docs, full_docs) -> None:
    docs = default_docs if case == "default" else full_docs
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "lucid-sweep-0.1.0"
        if doc["kind"] in ("Deployment", "Job"):
            selector = doc["spec"].get("selector", {}).get("matchLabels", {})
            pod_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert all(pod_labels[k] == v for k, v in selector.items())


def test_pdb_selects_workers(full_docs) -> None:
    pdb = one(full_docs, "PodDisruptionBudget", "-worker")
    pod_labels = one(full_docs, "Deployment", "-worker")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == FULL["worker"]["pdb"]["maxUnavailable"]
    assert all(pod_labels[k] == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    off = manifests(render({"worker": {"pdb": {"enabled": False, "maxUnavailable": 1}}}))
    assert not by_kind(off, "PodDisruptionBudget")


def test_keda_scaled_object(default_docs, full_docs) -> None:
    assert not by_kind(default_docs, "ScaledObject")
    so = one(full_docs, "ScaledObject", "-worker")
    keda = FULL["keda"]
    assert so["spec"]["scaleTargetRef"]["name"] == one(full_docs, "Deployment", "-worker")["metadata"]["name"]
    assert so["spec"]["minReplicaCount"] == 0
    assert so["spec"]["maxReplicaCount"] == keda["maxReplicaCount"]
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == FULL["sweep"]["queue"]["tasks"]
    assert trigger["metadata"]["value"] == str(keda["rabbitmq"]["value"])
    assert trigger["metadata"]["protocol"] == keda["rabbitmq"]["protocol"]
    auth = one(full_docs, "TriggerAuthentication", "-rabbitmq")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": FULL["amqp"]["existingSecret"], "key": keda["rabbitmq"]["hostSecretKey"]}
    ]


def test_coordinator_submit_and_watch(default_docs, full_docs) -> None:
    # default: submit is a post-install/post-upgrade hook, so every `helm upgrade` re-submits (resume)
    job = one(default_docs, "Job", "-submit")
    assert "post-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    assert pod_spec(job)["containers"][0]["args"][:1] == ["submit"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert not by_kind(default_docs, "Service")
    # full: a plain Job whose name carries the values-driven suffix; the watch exposes 9187
    job = one(full_docs, "Job", f"-submit-{FULL['coordinator']['submit']['nameSuffix']}")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert len(job["metadata"]["name"]) <= 63
    watch = one(full_docs, "Deployment", "-watch")
    (container,) = pod_spec(watch)["containers"]
    assert container["args"][0] == "watch"
    assert container["args"][container["args"].index("--listen") + 1] == "0.0.0.0:9187"
    assert container["args"][container["args"].index("--log-format") + 1] == FULL["coordinator"]["logFormat"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert env_of(container)["LUCID_RABBIT_API"]["value"] == FULL["coordinator"]["rabbitApi"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9187}
    svc = one(full_docs, "Service", "-watch")
    assert svc["spec"]["ports"][0]["port"] == 9187
    assert all(
        pod_spec(watch) and watch["spec"]["template"]["metadata"]["labels"][k] == v
        for k, v in svc["spec"]["selector"].items()
    )
    # the revision names the Job when no suffix is given
    values = copy.deepcopy(FULL)
    values["coordinator"]["submit"]["nameSuffix"] = ""
    names = [d["metadata"]["name"] for d in by_kind(manifests(render(values)), "Job")]
    assert names == ["lucid-submit-1"]


def test_status_command_in_notes_and_test_pod(default_docs) -> None:
    notes = render({})[f"{CHART.name}/templates/NOTES.txt"]
    assert "lucid-coordinator status --spec /etc/lucid/sweep.toml" in notes
    pod = one(default_docs, "Pod", "-status")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"][:3] == ["status", "--spec", "/etc/lucid/sweep.toml"]
    full_notes = render(FULL, **ALL_ON)[f"{CHART.name}/templates/NOTES.txt"]
    assert "exec deploy/lucid-watch -- lucid-coordinator status --spec /etc/lucid/sweep.toml" in full_notes


def test_monitoring_objects(full_docs) -> None:
    sm = one(full_docs, "ServiceMonitor", "-watch")
    pm = one(full_docs, "PodMonitor", "-worker")
    for obj, endpoints, job in ((sm, "endpoints", "lucid-coordinator"), (pm, "podMetricsEndpoints", "lucid-worker")):
        (endpoint,) = obj["spec"][endpoints]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
        assert {"action": "replace", "targetLabel": "job", "replacement": job} in endpoint["relabelings"]
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    worker_labels = one(full_docs, "Deployment", "-worker")["spec"]["template"]["metadata"]["labels"]
    assert all(worker_labels[k] == v for k, v in pm["spec"]["selector"]["matchLabels"].items())

    rule = one(full_docs, "PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(RULES)["groups"]

    dash = one(full_docs, "ConfigMap", "-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["metadata"]["annotations"] == {"grafana_folder": "lucid"}
    assert json.loads(dash["data"]["lucid-sweep.json"]) == json.loads(DASHBOARD.read_text())


# ------------------------------------------------------------------------------------------ schema


def walk_object_schemas(node: Any, path: str = "#"):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from walk_object_schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from walk_object_schemas(value, f"{path}/{n}")


def test_schema_is_closed_everywhere() -> None:
    schema = values_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    open_objects = [
        path
        for path, node in walk_object_schemas(schema)
        if node.get("type") == "object" and "additionalProperties" not in node
    ]
    assert not open_objects, f"object schemas without additionalProperties: {open_objects}"
    # every object with fixed properties is closed
    loose = [
        path
        for path, node in walk_object_schemas(schema)
        if "properties" in node and node.get("additionalProperties", False) is not False
    ]
    assert not loose, loose


@pytest.mark.parametrize("name", ["defaults", "full"])
def test_values_match_schema(name: str) -> None:
    values = merged_values({} if name == "defaults" else FULL)
    jsonschema.Draft7Validator(values_schema()).validate(values)


@pytest.mark.parametrize(
    ("file", "needle"),
    [
        ("bad-type-values.yaml", "gpusPerPod"),
        ("unknown-key-values.yaml", "gpuPerPod"),
        ("secret-in-values.yaml", "uri"),
    ],
)
def test_schema_rejects_bad_values(file: str, needle: str) -> None:
    values = load_yaml(BAD_VALUES / file)
    # Helm's own schema validation while rendering
    with pytest.raises(helm.HelmValuesError, match=needle):
        render(values)
    # the same schema through jsonschema, on the values Helm would use
    errors = list(jsonschema.Draft7Validator(values_schema()).iter_errors(merged_values(values)))
    assert errors, f"{file} passed jsonschema"
    assert any(needle in (".".join(map(str, e.absolute_path)) + e.message) for e in errors), errors


# ------------------------------------------------------------------------------------------ dashboard


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_panels() -> None:
    dash = dashboard()
    assert dash["uid"] == "lucid-sweep"
    panels = dash["panels"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no target"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty expr"
            assert target.get("datasource", panel["datasource"])["type"] == "prometheus"
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in ("progress", "images/s per worker", "images/s (total)", "eta", "queue", "p50", "p95",
                  "failures by outcome", "workers up"):
        assert topic in titles, f"no panel about {topic}"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert "$run" in " ".join(dashboard_exprs())


def metric_names(expr: str) -> set[str]:
    """Names of the series selectors in a PromQL expression (every selector here has label matchers)."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))


def test_dashboard_and_rules_use_lucid_metrics() -> None:
    rules = load_yaml(RULES)
    exprs = dashboard_exprs() + [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = set().union(*(metric_names(e) for e in exprs))
    assert names
    strange = sorted(n for n in names if not (n.startswith("lucid_") or n == "up"))
    assert not strange, strange
    for expr in exprs:
        for selector in re.findall(r"[a-z_:]+\s*\{([^}]*)\}", expr):
            assert re.search(r'job="lucid-(worker|coordinator)"', selector), f"selector without job: {expr}"


def test_dashboard_exprs_parse(tmp_path: Path) -> None:
    """Every expr is plain PromQL: with Grafana's variables substituted, promtool must accept it."""
    exprs = dashboard_exprs()
    rules = [
        {"record": f"lucid:dashboard_check:{n}", "expr": e.replace("$__rate_interval", "5m").replace("$run", ".*")}
        for n, e in enumerate(exprs)
    ]
    assert not [e for e in exprs if re.search(r"\$(?!__rate_interval\b|run\b)", e)], "unexpected variables"
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------ rules


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found (scripts/check-deploy.sh installs Debian's prometheus package)"
    return path


def test_promtool_check_rules() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_test_rules() -> None:
    proc = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_rules_cover_the_required_alerts() -> None:
    alerts = {r["alert"]: r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r}
    tested = set(re.findall(r"alertname:\s*(\S+)", RULES_TEST.read_text()))
    for name in ("LucidSweepNoProgress", "LucidDeadLetterQueueGrowing", "LucidWorkerDown", "LucidWorkerErrorRatioHigh"):
        assert name in alerts
    assert set(alerts) <= tested, f"alerts without a unit test: {set(alerts) - tested}"
    assert "15m" in alerts["LucidSweepNoProgress"]["expr"]


# ------------------------------------------------------------------------------------------ copies


@pytest.mark.parametrize(
    ("original", "copy_"),
    [
        (DASHBOARD, CHART / "dashboards" / "lucid-sweep.json"),
        (RULES, CHART / "rules" / "lucid-alerts.yaml"),
    ],
)
def test_chart_copies_are_identical(original: Path, copy_: Path) -> None:
    assert not copy_.is_symlink(), f"{copy_} must be a regular file (Helm drops symlinks)"
    assert copy_.read_bytes() == original.read_bytes(), (
        f"{copy_.relative_to(ROOT)} differs from {original.relative_to(ROOT)}: cp {original.relative_to(ROOT)} "
        f"{copy_.relative_to(ROOT)}"
    )


# ------------------------------------------------------------------------------------------ Dockerfiles


def dockerfile_stages(path: Path) -> list[list[str]]:
    stages: list[list[str]] = []
    logical = re.sub(r"\\\n", " ", path.read_text())
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("name", ["Dockerfile.worker", "Dockerfile.coordinator"])
def test_dockerfiles_static(name: str) -> None:
    """They cannot be built here (no container engine): check the final stage's essentials."""
    path = ROOT / "deploy" / name
    stages = dockerfile_stages(path)
    assert len(stages) >= 2, "multi-stage build expected"
    final = stages[-1]
    users = [line for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] == "10001", "the image must run as uid 10001"
    assert any(line.upper().startswith("ENTRYPOINT ") for line in final)
    text = path.read_text()
    if name == "Dockerfile.worker":
        assert "torch==${TORCH_VERSION}" in text and "TORCH_VERSION=2.11.0" in text
        assert re.search(r"nvidia/cuda:13\.0\.\d+-cudnn-runtime-ubuntu24\.04", text)
        assert "EXPOSE 9186" in text
    else:
        assert "torch==" not in text and "LIBTORCH" not in text
        assert "debian:bookworm-slim" in text


def test_python_is_new_enough() -> None:
    assert sys.version_info >= (3, 11), "tomllib needs Python 3.11"
    assert sys.prefix != sys.base_prefix, "run through scripts/check-deploy.sh (it sets up the venv)"


def test_deploy_doc_exists() -> None:
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    for needle in ("create secret generic", "helm install", "lucid-coordinator status", "drainTimeoutSeconds"):
        assert needle in doc, needle

