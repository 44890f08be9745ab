"""The cluster manifests are accepted by KubeRay's CRDs and say what the deploy guide promises.

`raycluster.yaml` and every KubeRay resource in `deploy/*.yaml` are validated against the
`openAPIV3Schema` of the matching CRD (vendored in `tests/data/kuberay/`), made strict: an
object that declares `properties` accepts no others, as the API server would silently prune
them (an unknown field is a typo). The plain CronJob, the Dockerfile and the recipes in
`deploy/README.md` get structural checks.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import itertools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from storage.uri import is_s3

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = Path(__file__).parent / "data" / "kuberay"
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCronJob": "ray.io_raycronjobs.yaml",
}
JOB_MODULES = {"train", "detect", "scan"}  # jobs/<name>.py, run as `python -m jobs.<name>`
MANIFESTS = [REPO / "raycluster.yaml", *sorted((REPO / "deploy").glob("*.yaml"))]
README = REPO / "deploy" / "README.md"
GPU = "nvidia.com/gpu"
# A DNS-1035 label: KubeRay derives Service names from these names.
NAME_SCHEMA = {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~0.5 s for all three CRDs


# Structural schema → JSON Schema.


def to_json_schema(node: dict, *, open_objects: bool = False) -> dict:
    """A Kubernetes structural schema node as Draft 7 JSON Schema, strict about fields.

    Drops `x-kubernetes-*`, `nullable` and `format` (adding their meaning: int-or-string accepts
    both types, nullable adds "null", int32/int64 bound the integer) and closes every object that
    lists `properties` without `additionalProperties`, except under
    `x-kubernetes-preserve-unknown-fields`, where the API server keeps unknown fields.
    """
    open_objects = open_objects or bool(node.get("x-kubernetes-preserve-unknown-fields"))
    out: dict = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format", "description"):
            continue
        if key == "properties":
            out[key] = {
                name: to_json_schema(sub, open_objects=open_objects) for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value, open_objects=open_objects)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(sub, open_objects=open_objects) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["type"] = ["integer", "string"]
    if node.get("type") == "integer" and (bounds := INT_BOUNDS.get(node.get("format"))):
        out.setdefault("minimum", bounds[0])
        out.setdefault("maximum", bounds[1])
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if "properties" in node and "additionalProperties" not in node and not open_objects:
        out["additionalProperties"] = False
    return out


def vendored_crd(kind: str) -> bytes:
    return gzip.decompress((CRD_DIR / f"{CRD_FILES[kind]}.gz").read_bytes())


@functools.cache
def validator(kind: str) -> Draft7Validator:
    """The validator of a KubeRay kind: its CRD's storage version, plus apiVersion/kind/name."""
    crd = yaml.load(vendored_crd(kind), Loader=_Loader)
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = to_json_schema(version["schema"]["openAPIV3Schema"])
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    props = schema["properties"]
    props["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
    props["kind"] = {"const": kind}
    # Top-level metadata stays open (the API server owns it); only the name is checked.
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": NAME_SCHEMA},
    }
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_errors(doc: dict, kind: str | None = None) -> list[str]:
    """Every violation of `kind`'s schema (default: the doc's kind), as `path: message`."""
    errors = validator(kind or doc["kind"]).iter_errors(doc)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


# The manifests.


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None]


def all_docs() -> Iterator[tuple[str, dict]]:
    for path in MANIFESTS:
        for i, doc in enumerate(load_docs(path)):
            yield f"{path.relative_to(REPO)}#{i}", doc


def docs_of_kind(*kinds: str) -> list[tuple[str, dict]]:
    return [(where, doc) for where, doc in all_docs() if doc.get("kind") in kinds]


def raycluster() -> dict:
    (doc,) = load_docs(REPO / "raycluster.yaml")
    return doc


def cluster_specs() -> list[tuple[str, dict]]:
    """The RayCluster spec of raycluster.yaml and the rayClusterSpec of every RayJob/RayCronJob."""
    specs = []
    for where, doc in all_docs():
        spec = doc.get("spec", {})
        if doc.get("kind") == "RayCluster":
            specs.append((where, spec))
        elif doc.get("kind") == "RayJob" and "rayClusterSpec" in spec:
            specs.append((f"{where}:rayClusterSpec", spec["rayClusterSpec"]))
        elif doc.get("kind") == "RayCronJob" and "rayClusterSpec" in spec.get("jobTemplate", {}):
            template = spec["jobTemplate"]
            specs.append((f"{where}:jobTemplate.rayClusterSpec", template["rayClusterSpec"]))
    return specs


ALL_DOCS = list(all_docs())
KUBERAY_DOCS = docs_of_kind(*CRD_FILES)
CLUSTER_SPECS = cluster_specs()
JOB_CLUSTER_SPECS = [(w, s) for w, s in CLUSTER_SPECS if not w.startswith("raycluster.yaml")]
RAYCRONJOBS = docs_of_kind("RayCronJob")


def _ids(items: list[tuple[str, dict]]) -> list[str]:
    return [where for where, _ in items]


def test_manifests_exist() -> None:
    kinds = {doc["kind"] for _, doc in ALL_DOCS}
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob"} <= kinds, kinds


@pytest.mark.parametrize("where, doc", ALL_DOCS, ids=_ids(ALL_DOCS))
def test_every_manifest_is_a_known_kind(where: str, doc: dict) -> None:
    known = {("ray.io/v1", k) for k in CRD_FILES} | {("batch/v1", "CronJob")}
    assert (doc.get("apiVersion"), doc.get("kind")) in known, (
        f"{where}: {doc.get('apiVersion')}/{doc.get('kind')} is neither a KubeRay resource nor "
        "a batch/v1 CronJob; add a check for it to tests/test_manifests.py"
    )


@pytest.mark.parametrize("where, doc", KUBERAY_DOCS, ids=_ids(KUBERAY_DOCS))
def test_kuberay_manifest_matches_its_crd(where: str, doc: dict) -> None:
    errors = schema_errors(doc)
    assert not errors, f"{where} is not accepted by KubeRay's CRD:\n" + "\n".join(errors)


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_vendored_crds_are_the_upstream_files(kind: str) -> None:
    """Each vendored CRD is byte for byte the upstream file whose SHA-256 its README records."""
    readme = (CRD_DIR / "README.md").read_text()
    recorded = re.search(rf"`{re.escape(CRD_FILES[kind])}`\s*\|\s*`([0-9a-f]{{64}})`", readme)
    assert recorded, f"tests/data/kuberay/README.md records no SHA-256 for {CRD_FILES[kind]}"
    assert hashlib.sha256(vendored_crd(kind)).hexdigest() == recorded[1], (
        f"tests/data/kuberay/{CRD_FILES[kind]}.gz is not the upstream file the README names: "
        "re-vendor it (tests/data/kuberay/README.md)"
    )


# The validator is strict, not vacuous.


def _rename(obj: dict, old: str, new: str) -> None:
    obj[new] = obj.pop(old)


MUTATIONS = {
    # name: (mutation of a copy of raycluster.yaml, a fragment the errors must contain)
    "misspelled workerGroupSpecs": (
        lambda d: _rename(d["spec"], "workerGroupSpecs", "workerGroupSpec"),
        "'workerGroupSpec' was unexpected",
    ),
    "replicas as a word": (
        lambda d: d["spec"]["workerGroupSpecs"][0].update(replicas="two"),
        "spec.workerGroupSpecs.0.replicas: 'two' is not of type 'integer'",
    ),
    "misspelled field deep in the pod template": (
        lambda d: _rename(
            d["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0],
            "resources",
            "resource",
        ),
        "'resource' was unexpected",
    ),
    "rayStartParams value not a string": (
        lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        "spec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'",
    ),
    "int32 overflow": (
        lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas=2**31),
        "spec.workerGroupSpecs.0.maxReplicas: 2147483648 is greater than the maximum",
    ),
    "quantity neither int nor string": (
        lambda d: d["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"].update({GPU: True}),
        "limits.nvidia.com/gpu: True is not valid under any of the given schemas",
    ),
    "malformed quantity": (
        lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ].update(memory="16 GB"),
        "limits.memory: '16 GB' does not match",
    ),
    "enum": (
        lambda d: d["spec"]["authOptions"].update(mode="password"),
        "spec.authOptions.mode: 'password' is not one of",
    ),
    "missing required field": (
        lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"),
        "spec.workerGroupSpecs.0: 'groupName' is a required property",
    ),
    "wrong apiVersion": (
        lambda d: d.update(apiVersion="ray.io/v1alpha1"),
        "apiVersion: 'ray.io/v1' was expected",
    ),
    "wrong kind": (lambda d: d.update(kind="RayClusters"), "kind: 'RayCluster' was expected"),
    "no name": (lambda d: d["metadata"].pop("name"), "'name' is a required property"),
    "name not a DNS label": (
        lambda d: d["metadata"].update(name="Whale_Scan"),
        "metadata.name: 'Whale_Scan' does not match",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_validator_rejects_a_broken_raycluster(mutation: str) -> None:
    mutate, expected = MUTATIONS[mutation]
    doc = copy.deepcopy(raycluster())
    assert not schema_errors(doc)
    mutate(doc)
    errors = "\n".join(schema_errors(doc, "RayCluster"))
    assert expected in errors, f"{mutation}: expected {expected!r} among:\n{errors or '(none)'}"


def test_validator_rejects_broken_job_recipes() -> None:
    (rayjob,) = [doc for _, doc in docs_of_kind("RayJob")]
    broken = copy.deepcopy(rayjob)
    _rename(broken["spec"], "shutdownAfterJobFinishes", "shutdownAfterJobFinish")
    assert "'shutdownAfterJobFinish' was unexpected" in "\n".join(schema_errors(broken))

    (raycron,) = [doc for _, doc in docs_of_kind("RayCronJob")]
    broken = copy.deepcopy(raycron)
    broken["spec"].pop("schedule")
    assert "spec: 'schedule' is a required property" in schema_errors(broken)


def test_top_level_metadata_stays_open() -> None:
    doc = copy.deepcopy(raycluster())
    doc["metadata"].update(namespace="whales", annotations={"a": "b"}, finalizers=["x"])
    assert not schema_errors(doc)


def test_preserve_unknown_fields_and_nullable_are_honoured() -> None:
    schema = to_json_schema(
        {
            "type": "object",
            "properties": {
                "open": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {"type": "object", "properties": {"b": {}}}},
                },
                "closed": {"type": "object", "properties": {"b": {"type": "string"}}},
                "maybe": {"type": "string", "nullable": True},
                "port": {"x-kubernetes-int-or-string": True},
            },
        }
    )
    check = Draft7Validator(schema).is_valid
    assert check({"open": {"x": 1, "a": {"y": 2}}, "maybe": None, "port": "http"})
    assert check({"port": 8080})
    assert not check({"closed": {"x": 1}})
    assert not check({"port": 1.5})


# What the cluster holds.


def _pods(spec: dict) -> Iterator[tuple[str, dict]]:
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group


def _gpu_groups(spec: dict) -> list[dict]:
    def asks_for_gpu(container: dict) -> bool:
        resources = container.get("resources", {})
        return GPU in resources.get("requests", {}) or GPU in resources.get("limits", {})

    return [
        group
        for group in spec.get("workerGroupSpecs", [])
        if any(map(asks_for_gpu, group["template"]["spec"]["containers"]))
    ]


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]i?|)$")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_UNITS |= {f"{u}i": 2 ** (10 * i) for i, u in enumerate("KMGTPE", start=1)}


def quantity_bytes(value: str | int) -> float:
    """A Kubernetes memory quantity (`16Gi`, `512M`, `4294967296`) in bytes."""
    m = _QUANTITY.match(str(value))
    assert m, f"unsupported quantity {value!r}"
    return float(m.group(1)) * _UNITS[m.group(2)]


@pytest.mark.parametrize("where, spec", CLUSTER_SPECS, ids=_ids(CLUSTER_SPECS))
def test_gpu_workers_hold_exactly_one_gpu(where: str, spec: dict) -> None:
    groups = _gpu_groups(spec)
    assert groups, f"{where}: no worker group asks for {GPU}"
    for group in groups:
        for c in group["template"]["spec"]["containers"]:
            res = c.get("resources", {})
            got = (str(res.get("requests", {}).get(GPU)), str(res.get("limits", {}).get(GPU)))
            assert got == ("1", "1"), (
                f"{where}: group {group['groupName']!r} container {c['name']!r} asks "
                f"requests/limits {GPU} = {got}, expected exactly 1 and 1 (one GPU per Ray node)"
            )
        assert group.get("rayStartParams", {}).get("num-gpus", "1") == "1", where
        tolerated = {t.get("key") for t in group["template"]["spec"].get("tolerations", [])}
        assert GPU in tolerated, f"{where}: group {group['groupName']!r} doesn't tolerate {GPU}"


@pytest.mark.parametrize("where, spec", CLUSTER_SPECS, ids=_ids(CLUSTER_SPECS))
def test_head_has_no_gpu_and_takes_no_work(where: str, spec: dict) -> None:
    head = spec["headGroupSpec"]
    for c in head["template"]["spec"]["containers"]:
        for kind in ("requests", "limits"):
            assert GPU not in c.get("resources", {}).get(kind, {}), f"{where}: head {kind} a GPU"
    params = head.get("rayStartParams", {})
    assert params.get("num-gpus", "0") == "0", where
    assert params.get("num-cpus") == "0", f"{where}: the head must set num-cpus: '0'"
    assert params.get("dashboard-host") == "0.0.0.0", where


@pytest.mark.parametrize("where, spec", CLUSTER_SPECS, ids=_ids(CLUSTER_SPECS))
def test_every_ray_pod_has_a_memory_dev_shm_that_holds_the_object_store(
    where: str, spec: dict
) -> None:
    for group_name, group in _pods(spec):
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        ray = pod["containers"][0]  # KubeRay runs Ray in the first container
        mounts = {m["mountPath"]: m["name"] for m in ray.get("volumeMounts", [])}
        assert "/dev/shm" in mounts, f"{where}: {group_name} mounts nothing at /dev/shm"
        empty_dir = volumes.get(mounts["/dev/shm"], {}).get("emptyDir")
        assert empty_dir and empty_dir.get("medium") == "Memory", (
            f"{where}: {group_name}'s /dev/shm must be an emptyDir with medium: Memory"
        )
        store = group.get("rayStartParams", {}).get("object-store-memory")
        memory = ray.get("resources", {}).get("limits", {}).get("memory")
        assert memory, f"{where}: {group_name} has no memory limit (/dev/shm counts against it)"
        if store is not None and "sizeLimit" in empty_dir:
            assert int(store) <= quantity_bytes(empty_dir["sizeLimit"]), (
                f"{where}: {group_name}'s object store ({store} B) does not fit in /dev/shm "
                f"({empty_dir['sizeLimit']})"
            )
        assert quantity_bytes(empty_dir.get("sizeLimit", memory)) < quantity_bytes(memory), (
            f"{where}: {group_name}'s /dev/shm must leave room below the memory limit {memory}"
        )


@pytest.mark.parametrize("where, spec", CLUSTER_SPECS, ids=_ids(CLUSTER_SPECS))
def test_cluster_autoscales_within_bounds_on_one_image_with_token_auth(
    where: str, spec: dict
) -> None:
    assert spec.get("enableInTreeAutoscaling") is True, where
    assert "autoscalerOptions" in spec, where
    for group in spec["workerGroupSpecs"]:
        lo, hi = group["minReplicas"], group["maxReplicas"]
        assert 0 <= lo <= group.get("replicas", lo) <= hi and hi >= 1, (where, group["groupName"])
    images = {c["image"] for _, g in _pods(spec) for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1, f"{where}: Ray containers run different images {images}"
    assert spec.get("authOptions", {}).get("mode") == "token", f"{where}: token auth is off"


@pytest.mark.parametrize("where, spec", JOB_CLUSTER_SPECS, ids=_ids(JOB_CLUSTER_SPECS))
def test_job_clusters_are_raycluster_yaml(where: str, spec: dict) -> None:
    """The RayJob and RayCronJob clusters are raycluster.yaml's spec: one cluster to describe."""
    expected = raycluster()["spec"]
    assert spec == expected, (
        f"{where} differs from raycluster.yaml's spec at {_first_difference(spec, expected)}; "
        "copy raycluster.yaml's spec into it"
    )


def _first_difference(a: object, b: object, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '<root>'} ({a!r} != {b!r})"


def test_dockerfile_ray_matches_ray_version() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+rayproject/ray:(\d+\.\d+\.\d+)-", dockerfile, re.MULTILINE)
    pins = set(re.findall(r"ray\[[^\]]*\]==(\d+\.\d+\.\d+)", dockerfile))
    versions = {spec["rayVersion"] for _, spec in CLUSTER_SPECS}
    assert versions == {base} and pins <= {base}, (
        f"deploy/Dockerfile's Ray {base} (pins {pins}) vs rayVersion {versions}"
    )


# Schedules and jobs.

_CRON_FIELDS = (  # (low, high, names) of minute, hour, day of month, month, day of week
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    (0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def cron_errors(schedule: str) -> list[str]:
    """Why a standard 5-field cron expression (as Kubernetes CronJob reads it) is invalid."""
    fields = schedule.split()
    if len(fields) != 5:
        return [f"{schedule!r}: {len(fields)} fields, expected 5"]
    errors = []
    for field, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in field.split(","):
            span, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                errors.append(f"{field!r}: bad step {step!r}")
            if span in ("*", "?"):
                continue
            ends = [_cron_value(x, low, high, names) for x in span.split("-")]
            if len(ends) > 2 or None in ends or (len(ends) == 2 and ends[0] > ends[1]):
                errors.append(f"{field!r}: {span!r} is not a value or range in {low}-{high}")
    return errors


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    """A number, or a name counted from `low` (JAN = 1, SUN = 0); None when out of range."""
    if text.upper() in names:
        return names.index(text.upper()) + low
    return int(text) if text.isdigit() and low <= int(text) <= high else None


@pytest.mark.parametrize("schedule", ["17 */6 * * *", "0 0 1 JAN,jul *", "*/15 8-18 * * MON-FRI"])
def test_cron_check_accepts(schedule: str) -> None:
    assert cron_errors(schedule) == []


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * *",
        "60 * * * *",
        "*/0 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "5-1 * * * *",
        "0 0 * * FUNDAY",
        "0 0 * * * *",
    ],
)
def test_cron_check_rejects(schedule: str) -> None:
    assert cron_errors(schedule)


def _cronjob() -> tuple[str, dict]:
    (found,) = docs_of_kind("CronJob")
    return found


def test_cronjob_is_a_valid_batch_v1_cronjob() -> None:
    where, doc = _cronjob()
    assert doc["apiVersion"] == "batch/v1" and doc["kind"] == "CronJob", where
    assert re.fullmatch(NAME_SCHEMA["pattern"], doc["metadata"]["name"]), where
    assert len(doc["metadata"]["name"]) <= 52, f"{where}: CronJob names are limited to 52 chars"
    spec = doc["spec"]
    assert cron_errors(spec["schedule"]) == [], where
    assert spec.get("concurrencyPolicy") == "Forbid", f"{where}: scans must not overlap"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure"), where
    assert len(pod["containers"]) == 1, where


def test_cronjob_submits_the_scan_to_the_raycluster_with_its_token() -> None:
    where, doc = _cronjob()
    (container,) = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    argv = command_line(container)
    assert argv[:3] == ["ray", "job", "submit"] and "--" in argv, f"{where}: {argv}"
    job = argv[argv.index("--") + 1 :]
    assert job[:3] == ["python", "-m", "jobs.scan"], f"{where}: runs {job}, not jobs.scan"
    cluster = raycluster()
    head_svc = f"http://{cluster['metadata']['name']}-head-svc:8265"
    address = argv[argv.index("--address") + 1]
    assert address == head_svc, f"{where}: submits to {address}, the head service is {head_svc}"
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["RAY_AUTH_MODE"]["value"] == "token", where
    secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": cluster["spec"]["authOptions"]["secretName"], "key": "auth_token"}, (
        f"{where}: RAY_AUTH_TOKEN must come from the RayCluster's auth Secret"
    )


@pytest.mark.parametrize("where, doc", RAYCRONJOBS, ids=_ids(RAYCRONJOBS))
def test_raycronjob_schedule_is_valid_cron(where: str, doc: dict) -> None:
    assert cron_errors(doc["spec"]["schedule"]) == [], where


def command_line(container: dict) -> list[str]:
    """A container's argv; a `sh -c "..."` script is split into words."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        return shlex.split(argv[2])
    return argv


# Recipes.

_JOB_COMMAND = re.compile(r"python3?\s+-m\s+jobs\.(\w+)")
_SHELL_OPS = {"|", "||", "&&", ";", "&"}


def readme_commands(text: str) -> str:
    """The shell of a Markdown text, a command a line: fenced blocks and inline code spans."""
    text = text.replace("\\\n", " ")  # a trailing backslash continues the command
    fence = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", fence.sub("", text))
    return "\n".join([*fence.findall(text), *spans])


def recipes() -> list[tuple[str, str, list[str]]]:
    """Every `python -m jobs.X ...` in the manifests and deploy/README.md: (where, X, its args)."""
    found = []

    def add(where: str, text: str) -> None:
        for line in filter(_JOB_COMMAND.search, text.splitlines()):
            words = shlex.split(line, comments=True)
            for i in range(1, len(words) - 1):
                if words[i] == "-m" and words[i + 1].startswith("jobs."):
                    args = list(itertools.takewhile(lambda w: w not in _SHELL_OPS, words[i + 2 :]))
                    found.append((where, words[i + 1].removeprefix("jobs."), args))

    for where, doc in all_docs():
        spec = doc.get("spec", {})
        for entrypoint in (spec.get("entrypoint"), spec.get("jobTemplate", {}).get("entrypoint")):
            if entrypoint:
                add(f"{where}:entrypoint", entrypoint)
        if doc.get("kind") == "CronJob":
            for c in spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
                add(f"{where}:{c['name']}", shlex.join(command_line(c)))
    if README.exists():
        add("deploy/README.md", readme_commands(README.read_text()))
    return found


def test_recipes_run_job_modules_the_cli_has() -> None:
    found = recipes()
    # Any mention at all, prose included, names a job module that exists.
    mentioned = {
        (path.name, module)
        for path in [*MANIFESTS, README]
        if path.exists()
        for module in _JOB_COMMAND.findall(path.read_text())
    }
    unknown = {*mentioned, *((where, module) for where, module, _ in found)}
    unknown = sorted((where, module) for where, module in unknown if module not in JOB_MODULES)
    assert not unknown, f"recipes name job modules that don't exist: {unknown}"
    modules = {module for _, module, _ in found}
    assert modules == JOB_MODULES, f"recipes cover {modules}, expected each of {JOB_MODULES}"


def test_recipes_parse_with_the_cli() -> None:
    """Each recipe's arguments parse with its click command (names, types, required options),
    without running it."""
    import click

    from jobs.cli import main as group

    wrong, missing = [], set()
    for where, module, args in recipes():
        command = group.get_command(click.Context(group), module)  # imports jobs.<module>
        if command is None:
            missing.add(module)
            continue
        try:
            _paths_need_not_exist(command).make_context(f"jobs.{module}", list(args)).close()
        except click.ClickException as e:
            wrong.append(
                f"{where}: python -m jobs.{module} {shlex.join(args)}: {e.format_message()}"
            )
    assert not wrong, "\n".join(wrong)
    assert not missing, f"recipes run commands `whalescan` lacks: {sorted(missing)}"


def _paths_need_not_exist(command):
    """A copy of a click command whose path arguments skip the existence check: recipe paths
    exist on the cluster, not here."""
    import click

    command = copy.copy(command)
    command.params = [copy.copy(p) for p in command.params]
    for p in command.params:
        if isinstance(p.type, click.Path):
            p.type = copy.copy(p.type)
            p.type.exists = False
    return command


def working_dirs() -> list[tuple[str, str]]:
    """Every Ray working_dir the recipes name: runtimeEnvYAML and `ray job submit --working-dir`."""
    found = []
    for where, doc in all_docs():
        spec = doc.get("spec", {})
        for job in (spec, spec.get("jobTemplate", {})):
            if "runtimeEnvYAML" in job:
                env = yaml.safe_load(job["runtimeEnvYAML"])
                assert isinstance(env, dict), f"{where}: runtimeEnvYAML is not a mapping"
                if "working_dir" in env:
                    found.append((where, env["working_dir"]))
        if doc.get("kind") == "CronJob":
            for c in spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
                argv = command_line(c)
                found += [(where, argv[i + 1]) for i, a in enumerate(argv) if a == "--working-dir"]
    if README.exists():
        for line in readme_commands(README.read_text()).splitlines():
            if "--working-dir" in line:
                words = shlex.split(line, comments=True)
                found.append(("deploy/README.md", words[words.index("--working-dir") + 1]))
    return found


def test_remote_working_dirs_are_zips_the_image_can_fetch() -> None:
    dirs = working_dirs()
    assert any(d == "." for _, d in dirs), "the guide should submit training with --working-dir ."
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for where, uri in dirs:
        if "://" not in uri:
            continue
        # Ray takes a remote working_dir only as a .zip; s3:// needs smart_open[s3] on the head.
        assert uri.endswith(".zip"), f"{where}: remote working_dir {uri} is not a .zip"
        if is_s3(uri):
            assert "smart_open[s3]" in dockerfile, f"{where}: the image can't fetch {uri}"


def _parsed_recipes(*modules: str) -> list[tuple[str, str, dict]]:
    """(where, module, click params) of every recipe of `modules`, parsed with the real CLI."""
    import click

    from jobs.cli import main as group

    parsed = []
    for where, module, args in recipes():
        if module in modules:
            command = _paths_need_not_exist(group.get_command(click.Context(group), module))
            with command.make_context(f"jobs.{module}", list(args)) as ctx:
                parsed.append((where, module, dict(ctx.params)))
    return parsed


def test_detection_recipes_take_the_bundle_from_s3() -> None:
    """The detect and scan recipes name the model bundle as one `s3://bucket/key.tar`, which
    the driver fetches itself (no working_dir needed), and the guide shows how to upload it."""
    from storage.uri import S3Uri

    parsed = _parsed_recipes("detect", "scan")
    assert {module for _, module, _ in parsed} == {"detect", "scan"}, parsed
    readme = readme_commands(README.read_text())
    bundles = set()
    for where, module, params in parsed:
        bundle = str(params["bundle"])
        key = S3Uri.parse(bundle).key
        assert key.endswith(".tar"), f"{where}: jobs.{module} bundle {bundle} is not an s3:// .tar"
        bundles.add(bundle)
        if module == "scan":  # the scan's own checks, which run before anything is fetched
            from jobs.scan import ScanConfig

            ScanConfig(params["source"], bundle, params["reports"], suffixes=params["suffixes"])
    assert len(bundles) == 1, f"the recipes run different bundles: {sorted(bundles)}"
    (bundle,) = bundles
    uploads = [line for line in readme.splitlines() if re.search(r"\baws s3 cp\b", line)]
    assert any(shlex.split(line)[-1] == bundle for line in uploads), (
        f"deploy/README.md shows no `aws s3 cp … {bundle}` publishing the recipes' bundle"
    )
