"""A flow as an Argo Workflow: ``flow.to_argo_yaml(**options)`` -> YAML text.

Contract of the output (one YAML document, the same text for the same flow
and options, so it can be golden-tested and diffed):

  * an ``argoproj.io/v1alpha1`` Workflow; metadata.generateName is
    `generate_name` or ``"<flow>-"``, metadata.namespace only if given, and
    the label ``trellis.io/flow: <flow>``;
  * spec.entrypoint is a DAG template named after the flow, with one task
    per step in ``flow.order()``; a task's ``dependencies`` are
    ``flow.upstream(step)`` (data edges and `after`), ``[]`` for a root;
  * one container template per step, named after the step. Its command
    is what the local executor runs (_execute.step_command), except that a
    callable's spec travels inline as ``--b64`` (base64 of
    ``cloudpickle.dumps(step.spec())``, read by trellis.flow._callable);
  * every step container mounts the node's daemon socket directory
    (`socket_dir`, a hostPath volume ``trellis-socket`` of type Directory)
    at the same path, and gets TRELLIS_SOCKET, TRELLIS_STEP and
    TRELLIS_RUN_ID (the workflow's name, ``{{workflow.name}}``) besides
    step.env (the TRELLIS_* names win, as they do locally);
  * template annotations ``trellis.io/inputs`` / ``trellis.io/outputs``
    hold the step's object names as a JSON list, so an operator can read
    the data flow from ``kubectl get workflow -o yaml``;
  * `placement` (step name -> Kubernetes node name) pins a step with a
    required nodeAffinity on ``kubernetes.io/hostname``; unplaced steps
    go where the scheduler puts them.

What the image must provide (not checked here): `python` with trellis and
cloudpickle installed, every script at the same absolute path as on the
machine that exported the flow, and the installed packages whose callables
Step.spec() pickles by reference (the user's own modules travel by value;
see _graph._pickle_callable). A trellisd must serve `socket_dir` on every
node a step can land on. Unlike a local run, Argo does not check that a
step put its outputs: a step that exits 0 has succeeded.

Errors: trellis.InvalidArgument for a placement naming unknown steps or
giving a node that is not a non-empty string, a relative `socket_dir`, or a
step named like the flow (the two templates would clash); a cycle raises
InvalidArgument from flow.order()."""

import base64
import json
import posixpath

import cloudpickle
import yaml

from trellis import InvalidArgument
from trellis.flow._execute import command_for

SOCKET_VOLUME = "trellis-socket"
#: Argo's name for a template's main container.
CONTAINER_NAME = "main"
#: Lines are never folded: a command reads (and diffs) as one line.
_NO_FOLDING = float("inf")


def to_argo_yaml(flow, *, image="trellis/python:latest", placement=None,
                 socket_dir="/var/run/trellis", socket_name="trellis.sock",
                 namespace=None, generate_name=None,
                 python="/usr/bin/python3"):
    """The Argo Workflow YAML of `flow` (see the module docstring)."""
    placement = _checked_placement(flow, placement)
    if not isinstance(socket_dir, str) or not socket_dir.startswith("/"):
        raise InvalidArgument(f"socket_dir {socket_dir!r}: give an absolute "
                              "path (it is a hostPath on every node)")
    if flow.name in flow.steps:
        raise InvalidArgument(f"flow {flow.name!r} has a step of the same "
                              "name; the DAG template and the step's "
                              "template would clash: rename one")
    socket_dir = posixpath.normpath(socket_dir)
    socket = posixpath.join(socket_dir, socket_name)
    order = flow.order()

    metadata = {"generateName": generate_name or f"{flow.name}-"}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {"trellis.io/flow": flow.name}

    dag = {"name": flow.name,
           "dag": {"tasks": [{"name": s, "template": s,
                              "dependencies": flow.upstream(s)}
                             for s in order]}}
    templates = [dag] + [
        _step_template(flow, flow.steps[s], image=image, python=python,
                       socket=socket, socket_dir=socket_dir,
                       node=placement.get(s))
        for s in order]

    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": {
            "entrypoint": flow.name,
            # Declared once, mounted by every step container, as the seeds'
            # Kubeflow sample mounts the vineyard volume at /var/run/vineyard.
            "volumes": [{"name": SOCKET_VOLUME,
                         "hostPath": {"path": socket_dir,
                                      "type": "Directory"}}],
            "templates": templates,
        },
    }
    return yaml.safe_dump(workflow, sort_keys=False, width=_NO_FOLDING)


def _checked_placement(flow, placement):
    """`placement` as a dict step -> node; InvalidArgument if it names a
    step the flow does not have or a node that is not a non-empty str."""
    if placement is None:
        return {}
    if not isinstance(placement, dict):
        raise InvalidArgument("placement: give a dict of step name -> "
                              f"node name, got {type(placement).__name__}")
    unknown = [s for s in placement if s not in flow.steps]
    if unknown:
        raise InvalidArgument(f"placement names steps that are not in flow "
                              f"{flow.name!r}: {unknown}")
    bad = [s for s, node in placement.items()
           if not isinstance(node, str) or not node]
    if bad:
        raise InvalidArgument(f"placement: the nodes of steps {bad} are not "
                              "node names (non-empty strings)")
    return dict(placement)


def _command(step, python):
    """argv of the step's container: what the local executor runs, with a
    callable's spec inline (no file of ours exists in the container)."""
    spec = step.spec()
    data = base64.b64encode(cloudpickle.dumps(spec)).decode("ascii")
    return command_for(spec, ["--b64", data], python)


def _step_template(flow, step, *, image, python, socket, socket_dir, node):
    trellis_env = {"TRELLIS_SOCKET": socket, "TRELLIS_STEP": step.name,
                   "TRELLIS_RUN_ID": "{{workflow.name}}"}
    env = [{"name": k, "value": v} for k, v in trellis_env.items()]
    env += [{"name": k, "value": v} for k, v in step.env.items()
            if k not in trellis_env]
    template = {
        "name": step.name,
        "metadata": {
            "labels": {"trellis.io/flow": flow.name,
                       "trellis.io/step": step.name},
            "annotations": {"trellis.io/kind": step.kind,
                            "trellis.io/inputs": json.dumps(step.inputs),
                            "trellis.io/outputs": json.dumps(step.outputs)},
        },
    }
    if node is not None:
        template["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": "kubernetes.io/hostname", "operator": "In",
                    "values": [node]}]}]}}}
    template["container"] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": _command(step, python),
        "env": env,
        "volumeMounts": [{"name": SOCKET_VOLUME, "mountPath": socket_dir}],
    }
    return template
