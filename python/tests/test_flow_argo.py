"""Tests of trellis.flow._argo (Flow.to_argo_yaml), offline: no cluster.

The output is checked three ways: against golden files (exact text), against
the Kubernetes client's own models for the Kubernetes parts (containers,
affinity, volumes, object metadata), and against a JSON Schema plus semantic
checks for the Argo parts (templates, DAG tasks, dependencies). Each checker
is also shown to reject bad input, so a pass means something.

Golden files: python/tests/golden/*.argo.yaml. After an intended change of
the output, regenerate them with
    TRELLIS_UPDATE_GOLDEN=1 python3 -m pytest python/tests/test_flow_argo.py
and review the diff."""

import base64
import copy
import os
import re
import subprocess

import cloudpickle
import jsonschema
import pytest
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client import models as k8s

import trellis
from trellis.flow._graph import Flow, Step

from conftest import python_env

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN_DIR = os.path.join(HERE, "golden")
STEP_PY = os.path.join(GOLDEN_DIR, "step.py")
PYTHON = "/usr/bin/python3"


def evaluate(x_test, y_test, model):
    """The housing flow's test step: mean squared error of a line model.
    A function of a module of ours, so Step.spec() pickles it by value: a
    step process needs no copy of this file."""
    slope, intercept = model
    return sum((slope * x + intercept - y) ** 2
               for x, y in zip(x_test, y_test)) / len(x_test)


def housing_flow():
    """The seeds' linear-regression pipeline: a script, a shell and a
    callable step, chained by `process` and by the data they share."""
    return (Flow("housing")
            .process(Step("preprocess", script=STEP_PY, args=["--rows", "1000"],
                          outputs=["x_train", "x_test", "y_train", "y_test"]))
            .process(Step("train", command="python3 /opt/housing/train.py",
                          inputs=["x_train", "y_train"], outputs=["model"],
                          env={"OMP_NUM_THREADS": "1"}))
            .process(Step("test", fn=evaluate,
                          inputs=["x_test", "y_test", "model"],
                          outputs=["score"])))


def fan_flow():
    """Fan-out and fan-in by data only: split -> (left, right) -> join, and
    a report step ordered by `after` alone."""
    return (Flow("fan")
            .add(Step("split", command="split-data", outputs=["a", "b"]))
            .add(Step("left", command="sum-part a", inputs=["a"],
                      outputs=["sum-a"], args=["--fast"]))
            .add(Step("right", command="sum-part b", inputs=["b"],
                      outputs=["sum-b"]))
            .add(Step("join", command="join-sums", inputs=["sum-a", "sum-b"],
                      outputs=["total"]))
            .add(Step("report", command="echo done", after=["join"])))


FAN_OPTIONS = dict(image="registry.local/trellis:1.0",
                   placement={"left": "node-a", "right": "node-b"},
                   socket_dir="/run/trellis/", socket_name="d.sock",
                   namespace="ml", generate_name="fan-run-",
                   python="/opt/py/bin/python3")


def containers(doc):
    """{template name: template} of the container templates."""
    return {t["name"]: t for t in doc["spec"]["templates"] if "container" in t}


def b64_arg(template):
    command = template["container"]["command"]
    return command[command.index("--b64") + 1]


# --- Kubernetes parts: checked by the kubernetes client's models ----------

class Invalid(Exception):
    """What a checker raises: the path of the bad value and why."""


_STRICT = Configuration()
_STRICT.client_side_validation = True  # the models' setters reject None
_PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool}


def k8s_model(data, type_name, path="$"):
    """`data` (parsed YAML, camelCase keys) as the kubernetes client type
    `type_name` (e.g. "V1Container", "list[V1Volume]"). Strict, unlike the
    client's own deserializer, which drops unknown keys: raises Invalid on
    an unknown key, a value of the wrong JSON type (a bool is no int; null
    is no value) or, through the model's constructor, a required field that
    is missing."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise Invalid(f"{path}: expected a list, got {data!r}")
        return [k8s_model(v, type_name[5:-1], f"{path}[{i}]")
                for i, v in enumerate(data)]
    if type_name.startswith("dict("):
        value_type = re.fullmatch(r"dict\(str, (.*)\)", type_name).group(1)
        if not isinstance(data, dict):
            raise Invalid(f"{path}: expected a mapping, got {data!r}")
        return {k: k8s_model(v, value_type, f"{path}.{k}")
                for k, v in data.items()}
    if type_name == "object":  # IntOrString, Quantity, ...: anything goes
        return data
    if type_name in _PRIMITIVES:
        if (not isinstance(data, _PRIMITIVES[type_name]) or
                (isinstance(data, bool) and type_name != "bool")):
            raise Invalid(f"{path}: expected {type_name}, got {data!r}")
        return data
    model = getattr(k8s, type_name)  # AttributeError: a type we do not use
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected a {type_name} mapping, got {data!r}")
    attr_of = {key: attr for attr, key in model.attribute_map.items()}
    unknown = [k for k in data if k not in attr_of]
    if unknown:
        raise Invalid(f"{path}: {type_name} has no field(s) {unknown}")
    kwargs = {attr_of[k]: k8s_model(v, model.openapi_types[attr_of[k]],
                                    f"{path}.{k}") for k, v in data.items()}
    try:
        return model(**kwargs, local_vars_configuration=_STRICT)
    except ValueError as e:  # a required field missing
        raise Invalid(f"{path}: {type_name}: {e}") from None


# --- Argo parts: a JSON Schema of the fields we emit, and semantics --------

DNS_LABEL = {"type": "string", "maxLength": 63,
             "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# Only what to_argo_yaml uses, closed (additionalProperties: false) so that
# a new field is a decision; the Kubernetes-typed values inside (container,
# affinity, volumes, metadata) are checked by k8s_model.
WORKFLOW_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "Workflow"},
        "metadata": {
            "type": "object",
            "required": ["generateName"],
            "properties": {"generateName": {
                "type": "string", "maxLength": 58,
                "pattern": "^[a-z0-9]([-a-z0-9]*)?$"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["entrypoint", "templates"],
            "properties": {
                "entrypoint": DNS_LABEL,
                "volumes": {"type": "array"},
                "templates": {"type": "array", "minItems": 1,
                              "items": {"$ref": "#/$defs/template"}},
            },
        },
    },
    "$defs": {
        "template": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": DNS_LABEL,
                "metadata": {"type": "object", "additionalProperties": False,
                             "properties": {"labels": STRING_MAP,
                                            "annotations": STRING_MAP}},
                "dag": {"$ref": "#/$defs/dag"},
                # Argo runs no container template without an image, though
                # a bare V1Container may leave it to a controller.
                "container": {"type": "object", "required": ["image"]},
                "affinity": {"type": "object"},
            },
            "oneOf": [{"required": ["dag"]}, {"required": ["container"]}],
        },
        "dag": {
            "type": "object",
            "additionalProperties": False,
            "required": ["tasks"],
            "properties": {"tasks": {
                "type": "array", "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "template", "dependencies"],
                    "properties": {
                        "name": DNS_LABEL,
                        "template": DNS_LABEL,
                        "dependencies": {"type": "array", "items": DNS_LABEL,
                                         "uniqueItems": True},
                    },
                }}},
        },
    },
}

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def argo_semantics(doc):
    """What a schema cannot say; raises Invalid: the entrypoint and every
    task's template exist, template and task names are unique, dependencies
    name tasks of the same DAG and make no cycle, every volume mount names
    a declared volume, and label values are valid."""
    templates = [t["name"] for t in doc["spec"]["templates"]]
    if len(set(templates)) != len(templates):
        raise Invalid(f"template names repeat: {templates}")
    if doc["spec"]["entrypoint"] not in templates:
        raise Invalid(f"entrypoint {doc['spec']['entrypoint']!r} names no "
                      "template")
    volumes = {v["name"] for v in doc["spec"].get("volumes", [])}
    for t in doc["spec"]["templates"]:
        for key, value in t.get("metadata", {}).get("labels", {}).items():
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise Invalid(f"{t['name']}: label {key}={value!r}")
        for mount in t.get("container", {}).get("volumeMounts", []):
            if mount["name"] not in volumes:
                raise Invalid(f"{t['name']}: mounts undeclared volume "
                              f"{mount['name']!r}")
        if "dag" not in t:
            continue
        tasks = {task["name"]: task for task in t["dag"]["tasks"]}
        if len(tasks) != len(t["dag"]["tasks"]):
            raise Invalid(f"{t['name']}: task names repeat")
        for task in tasks.values():
            if task["template"] not in templates:
                raise Invalid(f"task {task['name']!r}: no template "
                              f"{task['template']!r}")
            strangers = [d for d in task["dependencies"] if d not in tasks]
            if strangers:
                raise Invalid(f"task {task['name']!r} depends on {strangers}, "
                              f"not tasks of DAG {t['name']!r}")
        done = set()  # Kahn: peel off tasks whose dependencies are done
        while len(done) < len(tasks):
            ready = {n for n, task in tasks.items() if n not in done
                     and set(task["dependencies"]) <= done}
            if not ready:
                raise Invalid(f"DAG {t['name']!r}: tasks "
                              f"{sorted(set(tasks) - done)} form a cycle")
            done |= ready


def validate_workflow(doc):
    """Raises Invalid unless `doc` passes the schema, the Kubernetes models
    and the semantic checks."""
    errors = sorted(jsonschema.Draft202012Validator(WORKFLOW_SCHEMA)
                    .iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        raise Invalid("; ".join(f"{'/'.join(map(str, e.absolute_path))}: "
                                f"{e.validator}: {e.message}" for e in errors))
    k8s_model(doc["metadata"], "V1ObjectMeta", "$.metadata")
    k8s_model(doc["spec"].get("volumes", []), "list[V1Volume]",
              "$.spec.volumes")
    for i, t in enumerate(doc["spec"]["templates"]):
        path = f"$.spec.templates[{i}]"
        if "metadata" in t:
            k8s_model(t["metadata"], "V1ObjectMeta", path + ".metadata")
        if "container" in t:
            k8s_model(t["container"], "V1Container", path + ".container")
        if "affinity" in t:
            k8s_model(t["affinity"], "V1Affinity", path + ".affinity")
    argo_semantics(doc)


# --- golden files ----------------------------------------------------------

B64_PLACEHOLDER = "<base64 of cloudpickle.dumps(step.spec())>"


def normalized(text):
    """The export with what differs between machines replaced: the repo's
    path (in script paths) and the callables' pickles (their bytes depend on
    the cloudpickle version; test_callable_b64_round_trips checks them)."""
    for template in containers(yaml.safe_load(text)).values():
        if "--b64" in template["container"]["command"]:
            text = text.replace(b64_arg(template), B64_PLACEHOLDER)
    return text.replace(REPO_ROOT + "/", "<repo>/")


@pytest.mark.parametrize("golden, make_flow, options", [
    ("housing_flow.argo.yaml", housing_flow, {}),
    ("fan_flow.argo.yaml", fan_flow, FAN_OPTIONS),
])
def test_golden(golden, make_flow, options):
    text = normalized(make_flow().to_argo_yaml(**options))
    path = os.path.join(GOLDEN_DIR, golden)
    # TRELLIS_UPDATE_GOLDEN=1 rewrites the golden file (then this passes);
    # review the diff before committing it.
    if os.environ.get("TRELLIS_UPDATE_GOLDEN") == "1":
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), (
            f"{golden} differs; if intended, rerun with TRELLIS_UPDATE_GOLDEN=1")


def test_output_is_the_same_in_another_process():
    # Other hash seeds, a fresh import: no set or dict order leaks in. (A
    # by-value pickle need not be the same bytes in another process, so the
    # housing flow is compared without it.)
    ours = [normalized(housing_flow().to_argo_yaml()),
            fan_flow().to_argo_yaml(**FAN_OPTIONS)]
    code = ("import sys; sys.path.insert(0, %r); import test_flow_argo as t; "
            "print(repr([t.normalized(t.housing_flow().to_argo_yaml()), "
            "t.fan_flow().to_argo_yaml(**t.FAN_OPTIONS)]))" % HERE)
    for seed in ("1", "2"):
        out = subprocess.run([PYTHON, "-c", code], capture_output=True,
                             text=True, check=True, timeout=120,
                             env=python_env(PYTHONHASHSEED=seed)).stdout
        assert out.strip() == repr(ours)


# --- the checkers pass our output and fail bad output ------------------------

@pytest.mark.parametrize("make_flow, options", [
    (housing_flow, {}), (fan_flow, FAN_OPTIONS),
    (housing_flow, dict(placement={"preprocess": "n1", "test": "n2"}))])
def test_export_validates(make_flow, options):
    validate_workflow(yaml.safe_load(make_flow().to_argo_yaml(**options)))


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(WORKFLOW_SCHEMA)


def test_k8s_checker_agrees_with_the_client_serializer():
    made = k8s.V1Container(
        name="main", image="busybox", command=["true"], tty=False,
        env=[k8s.V1EnvVar(name="A", value="1")],
        volume_mounts=[k8s.V1VolumeMount(name="v", mount_path="/v")])
    data = ApiClient().sanitize_for_serialization(made)
    assert k8s_model(data, "V1Container") == made


@pytest.mark.parametrize("container, why", [
    ({"name": "main", "image": "x", "imagee": "y"}, r"no field\(s\) \['imagee'\]"),
    ({"image": "x"}, r"`name`, must not be `None`"),
    ({"name": "main", "image": "x", "command": "python3"}, "expected a list"),
    ({"name": "main", "image": "x", "tty": "yes"}, "expected bool"),
    ({"name": "main", "image": 7}, "expected str"),
    ({"name": "main", "image": "x", "env": [{"name": "A", "value": 1}]},
     r"env\[0\]\.value: expected str"),
    ({"name": "main", "image": "x", "env": [{"value": "1"}]},
     r"env\[0\]: V1EnvVar: .*`name`"),
    ({"name": "main", "image": "x", "volumeMounts": [{"name": "v"}]},
     r"volumeMounts\[0\]: V1VolumeMount: .*`mount_path`"),
])
def test_k8s_checker_rejects_bad_containers(container, why):
    with pytest.raises(Invalid, match=why):
        k8s_model(container, "V1Container")


def test_k8s_checker_rejects_bad_affinity_and_volume():
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname",
                                  "values": ["n1"]}]}  # no operator
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuring"
                                 "Execution": {"nodeSelectorTerms": [term]}}}
    with pytest.raises(Invalid, match="`operator`, must not be `None`"):
        k8s_model(affinity, "V1Affinity")
    with pytest.raises(Invalid, match=r"V1HostPathVolumeSource has no field"):
        k8s_model([{"name": "s", "hostPath": {"pth": "/x"}}], "list[V1Volume]")


def _template(doc, name):
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _tasks(doc):
    return {t["name"]: t for t in doc["spec"]["templates"][0]["dag"]["tasks"]}


@pytest.mark.parametrize("breakage, why", [
    (lambda d: d.update(apiVersion="argoproj.io/v1"), "apiVersion"),
    (lambda d: d.update(kind="CronWorkflow"), "kind"),
    (lambda d: d["metadata"].pop("generateName"), "generateName"),
    (lambda d: d["spec"].update(entrypoint="nowhere"), "entrypoint 'nowhere'"),
    (lambda d: d["spec"].update(templates=[]), "templates"),
    (lambda d: _template(d, "train")["container"].pop("image"), "'image'"),
    (lambda d: _template(d, "train")["container"].update(imagee="x"),
     r"no field\(s\) \['imagee'\]"),
    (lambda d: _template(d, "train")["container"].update(command="true"),
     "expected a list"),
    (lambda d: _template(d, "train").update(dag={"tasks": []}), "oneOf"),
    (lambda d: _template(d, "train").pop("container"), "oneOf"),
    (lambda d: _template(d, "train").update(name="Train_1"), "does not match"),
    (lambda d: _template(d, "train").update(steps=[]), "steps"),
    (lambda d: _tasks(d)["train"].pop("dependencies"), "dependencies"),
    (lambda d: _tasks(d)["train"].update(template="fit"), "no template 'fit'"),
    (lambda d: _tasks(d)["train"].update(dependencies=["prep"]),
     r"depends on \['prep'\]"),
    (lambda d: _tasks(d)["preprocess"].update(dependencies=["test"]),
     "form a cycle"),
    (lambda d: _tasks(d)["test"].update(name="train"), "task names repeat"),
    (lambda d: d["spec"]["templates"].append(_template(d, "test")),
     "template names repeat"),
    (lambda d: d["spec"].update(volumes=[]), "undeclared volume"),
    (lambda d: _template(d, "test")["metadata"]["labels"].update(
        {"trellis.io/step": "no spaces"}), "label"),
])
def test_invalid_workflows_fail(breakage, why):
    doc = yaml.safe_load(housing_flow().to_argo_yaml())
    validate_workflow(copy.deepcopy(doc))  # the unbroken one passes
    breakage(doc)
    with pytest.raises(Invalid, match=why):
        validate_workflow(doc)


# --- what the export says ------------------------------------------------------

def test_dag_follows_the_flow():
    for flow in (housing_flow(), fan_flow()):
        doc = yaml.safe_load(flow.to_argo_yaml())
        assert doc["spec"]["entrypoint"] == flow.name
        dag = doc["spec"]["templates"][0]
        assert dag["name"] == flow.name
        assert [(t["name"], t["template"], t["dependencies"])
                for t in dag["dag"]["tasks"]] == [
            (s, s, flow.upstream(s)) for s in flow.order()]
        assert list(containers(doc)) == flow.order()
    fan = _tasks(yaml.safe_load(fan_flow().to_argo_yaml()))
    assert fan["join"]["dependencies"] == ["left", "right"]  # fan-in
    assert fan["left"]["dependencies"] == fan["right"]["dependencies"] == [
        "split"]  # fan-out
    assert fan["report"]["dependencies"] == ["join"]  # `after` only


def test_metadata_and_options():
    doc = yaml.safe_load(housing_flow().to_argo_yaml())
    assert doc["metadata"] == {"generateName": "housing-",
                               "labels": {"trellis.io/flow": "housing"}}
    doc = yaml.safe_load(fan_flow().to_argo_yaml(**FAN_OPTIONS))
    assert doc["metadata"]["generateName"] == "fan-run-"
    assert doc["metadata"]["namespace"] == "ml"
    assert doc["spec"]["volumes"] == [{"name": "trellis-socket", "hostPath": {
        "path": "/run/trellis", "type": "Directory"}}]
    for name, t in containers(doc).items():
        c = t["container"]
        assert c["image"] == "registry.local/trellis:1.0"
        assert c["volumeMounts"] == [{"name": "trellis-socket",
                                      "mountPath": "/run/trellis"}]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["TRELLIS_SOCKET"] == "/run/trellis/d.sock"
        assert env["TRELLIS_STEP"] == name
        assert env["TRELLIS_RUN_ID"] == "{{workflow.name}}"
    t = containers(yaml.safe_load(housing_flow().to_argo_yaml(
        python="/opt/py/bin/python3")))
    assert [t[s]["container"]["command"][0] for s in t] == [
        "/opt/py/bin/python3", "/bin/sh", "/opt/py/bin/python3"]


def test_commands_and_env_per_kind(tmp_path):
    from trellis.flow._execute import step_command  # the local executor's
    flow = housing_flow()
    doc = yaml.safe_load(flow.to_argo_yaml())
    t = containers(doc)
    for name in ("preprocess", "train"):  # the same argv as a local run
        assert t[name]["container"]["command"] == step_command(
            flow.steps[name].spec(), str(tmp_path))
    assert t["preprocess"]["container"]["command"] == [
        PYTHON, STEP_PY, "--rows", "1000"]
    assert t["train"]["container"]["command"] == [
        "/bin/sh", "-c", "python3 /opt/housing/train.py", "train"]
    assert t["test"]["container"]["command"][:4] == [
        PYTHON, "-m", "trellis.flow._callable", "--b64"]
    assert t["train"]["container"]["env"][3:] == [
        {"name": "OMP_NUM_THREADS", "value": "1"}]
    assert t["train"]["metadata"]["annotations"] == {
        "trellis.io/kind": "shell",
        "trellis.io/inputs": '["x_train", "y_train"]',
        "trellis.io/outputs": '["model"]'}
    # A step cannot override where its daemon is (as locally).
    step = Step("s", command="true", env={"TRELLIS_SOCKET": "/x", "B": "2"})
    c = containers(yaml.safe_load(Flow("f").add(step).to_argo_yaml()))
    assert c["s"]["container"]["env"] == [
        {"name": "TRELLIS_SOCKET", "value": "/var/run/trellis/trellis.sock"},
        {"name": "TRELLIS_STEP", "value": "s"},
        {"name": "TRELLIS_RUN_ID", "value": "{{workflow.name}}"},
        {"name": "B", "value": "2"}]


def test_placement_pins_exactly_the_placed_steps():
    doc = yaml.safe_load(fan_flow().to_argo_yaml(**FAN_OPTIONS))
    pinned = {}
    for name, t in containers(doc).items():
        if "affinity" not in t:
            continue
        affinity = k8s_model(t["affinity"], "V1Affinity")
        [term] = (affinity.node_affinity
                  .required_during_scheduling_ignored_during_execution
                  .node_selector_terms)
        [expr] = term.match_expressions
        assert (expr.key, expr.operator) == ("kubernetes.io/hostname", "In")
        pinned[name] = expr.values
    assert pinned == {"left": ["node-a"], "right": ["node-b"]}
    assert not any("affinity" in t for t in yaml.safe_load(
        fan_flow().to_argo_yaml())["spec"]["templates"])


@pytest.mark.parametrize("placement, why", [
    ({"left": "n1", "lefty": "n2", "nope": "n3"}, r"\['lefty', 'nope'\]"),
    ({"left": ""}, r"\['left'\]"),
    ({"left": None}, r"\['left'\]"),
    (["left"], "dict"),
])
def test_bad_placement_is_invalid_argument(placement, why):
    with pytest.raises(trellis.InvalidArgument, match=why):
        fan_flow().to_argo_yaml(placement=placement)


def test_other_invalid_arguments():
    with pytest.raises(trellis.InvalidArgument, match="absolute"):
        fan_flow().to_argo_yaml(socket_dir="run/trellis")
    clash = Flow("train").add(Step("train", command="true"))
    with pytest.raises(trellis.InvalidArgument, match="clash"):
        clash.to_argo_yaml()


def test_yaml_round_trips():
    for flow, options in ((housing_flow(), {}), (fan_flow(), FAN_OPTIONS)):
        text = flow.to_argo_yaml(**options)
        doc = yaml.safe_load(text)
        assert yaml.safe_dump(doc, sort_keys=False,
                              width=float("inf")) == text
        assert text == flow.to_argo_yaml(**options)


def test_callable_b64_round_trips():
    flow = housing_flow()
    spec = cloudpickle.loads(base64.b64decode(
        b64_arg(containers(yaml.safe_load(flow.to_argo_yaml()))["test"]),
        validate=True))
    assert spec["name"] == "test" and spec["kind"] == "callable"
    assert spec["inputs"] == ["x_test", "y_test", "model"]
    assert spec["outputs"] == ["score"]
    fn = cloudpickle.loads(spec["fn"])
    assert fn.__name__ == "evaluate"
    assert fn([1.0], [2.0], (1.0, 0.0)) == evaluate([1.0], [2.0], (1.0, 0.0))
    del spec["fn"]
    assert spec == {k: v for k, v in flow.steps["test"].spec().items()
                    if k != "fn"}


def test_callable_command_runs_against_a_daemon(client, daemon):
    # The exported argv, run as the container would (minus the container):
    # the step gets its inputs from the daemon and puts its output. This
    # file is not on the child's path: `evaluate` travels by value.
    client.put([1.0, 2.0], name="x_test")
    client.put([3.0, 5.0], name="y_test")
    client.put((2.0, 0.0), name="model")
    doc = yaml.safe_load(housing_flow().to_argo_yaml())
    template = containers(doc)["test"]
    env = python_env(**{e["name"]: e["value"]
                        for e in template["container"]["env"]})
    env["TRELLIS_SOCKET"] = daemon.socket
    proc = subprocess.run(template["container"]["command"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert client.get(name="score") == pytest.approx(((2 - 3) ** 2 +
                                                      (4 - 5) ** 2) / 2)
