"""The Kubernetes manifests: valid for Kubernetes 1.30, and the DaemonSet's
pod spec (capabilities, host namespaces, mounts) enough to trace.

No cluster is reachable here, so the DaemonSet's pod spec is turned into a
``docker run`` of the collector image, and its capability set is also given
exactly to a collector on the host (``setpriv``), since Docker Engine 20.10
cannot grant BPF and PERFMON by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from collector.flow_fields import HostFlowFields
from collector.schema import Keys, container_node_id
from tests.conftest import TEST_LABEL, TEST_SESSION, require, wait_for
from tests.deploy.stack import ROOT, docker_run_args, kubernetes_documents

KUBERNETES_VERSION = "1.30"
MANIFESTS = ROOT / "deploy/kubernetes"
CONNECTIONS = 5


def daemonset() -> dict:
    return next(d for d in kubernetes_documents(MANIFESTS)["collector.yaml"]
                if d["kind"] == "DaemonSet")


def test_every_manifest_validates_against_the_kubernetes_schemas():
    from kubernetes_validate import utils

    documents = kubernetes_documents(MANIFESTS)
    listed = set(documents) | {"kustomization.yaml"}
    assert {p.name for p in MANIFESTS.glob("*.yaml")} == listed, "unlisted file"
    kinds = set()
    for docs in documents.values():
        for doc in docs:
            utils.validate(doc, KUBERNETES_VERSION, strict=True)  # raises if not
            kinds.add(doc["kind"])
    assert {"DaemonSet", "Deployment", "StatefulSet", "Service", "Ingress",
            "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret",
            "ConfigMap"} <= kinds


def test_validation_catches_a_bad_manifest():
    from kubernetes_validate import utils

    broken = daemonset()
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "capabilities"]["add"] = "BPF"  # a string, not a list
    with pytest.raises(utils.ValidationError):
        utils.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_collector_runs_on_every_node_with_read_only_rbac():
    spec = daemonset()["spec"]["template"]["spec"]
    assert {"operator": "Exists"} in spec["tolerations"]
    assert spec["hostPID"] is True
    rules = next(d for d in kubernetes_documents(MANIFESTS)["rbac.yaml"]
                 if d["kind"] == "ClusterRole")["rules"]
    assert {verb for rule in rules for verb in rule["verbs"]} == {"get", "list",
                                                                   "watch"}
    web = next(d for d in kubernetes_documents(MANIFESTS)["web.yaml"]
               if d["kind"] == "Deployment")
    assert web["spec"]["replicas"] == 2


def test_web_replicas_share_one_database_and_prepare_it_one_at_a_time():
    """More than one web replica: DATABASE_URL (the Secret) names a shared
    PostgreSQL, ``preparedb`` (migrate under a lock) runs before Daphne in an
    initContainer, and no replica needs a sticky client."""
    from webapp.env import database_from_url

    documents = kubernetes_documents(MANIFESTS)
    web = next(d for d in documents["web.yaml"] if d["kind"] == "Deployment")
    pod = web["spec"]["template"]["spec"]
    assert web["spec"]["replicas"] > 1
    secret = next(d for d in documents["secret.example.yaml"])
    database = database_from_url(secret["stringData"]["DATABASE_URL"])
    assert database["ENGINE"] == "django.db.backends.postgresql"
    for container in pod["initContainers"] + pod["containers"]:
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in \
            container["envFrom"]
    assert [c["command"] for c in pod["initContainers"]] == [
        ["python", "manage.py", "preparedb"]]
    for container in pod["containers"]:
        assert not {"migrate", "preparedb"} & set(" ".join(container["command"])
                                                  .split())
    service = next(d for d in documents["web.yaml"] if d["kind"] == "Service")
    assert "sessionAffinity" not in service["spec"]
    ingress = documents["ingress.example.yaml"][0]["metadata"]["annotations"]
    assert not any(key.endswith("/affinity") for key in ingress)


@pytest.mark.docker
@pytest.mark.ebpf
def test_the_daemonset_pod_spec_as_docker_run_traces_a_connection(
        docker_client, deploy_images, redis_server, redis_client, containers,
        ebpf_ready):
    spec = daemonset()["spec"]["template"]["spec"]
    engine_major = int(docker_client.version()["Version"].split(".")[0])
    host = f"k8s-{TEST_SESSION}"
    args = docker_run_args(
        spec, "collector", engine_knows_bpf=engine_major >= 23,
        env={"REDIS_URL": redis_server.url, "PORTOLAN_HOST_ID": host},
    )
    command = spec["containers"][0]["command"]
    name = f"pt-ds-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--label",
         f"{TEST_LABEL}={TEST_SESSION}", *args, deploy_images["collector"], *command],
        check=True, capture_output=True, timeout=60,
    )
    collector = docker_client.containers.get(name)
    try:
        keys = Keys("portolan")
        assert wait_for(lambda: redis_client.zscore(keys.collectors, host),
                        timeout=60, interval=0.5), collector.logs().decode()[-2000:]
        server = containers.run("httpd -f -p 80 -h /var/www")
        server_ip = containers.ip(server)
        client = containers.run(
            f"sleep 3; for i in $(seq {CONNECTIONS}); do "
            f"wget -q -O /dev/null http://{server_ip}/; done; sleep 600")
        source = container_node_id(host, client.id)

        def connections() -> int:
            total = 0
            fields = HostFlowFields(host, [c.decode() for c in redis_client.hkeys(
                keys.containers(host))], redis_client.hgetall(keys.ids(host)))
            for field, value in redis_client.hgetall(keys.flows(host)).items():
                key, counter = fields.parse(field.decode())
                if (key.node, key.ip, key.port, counter) == (
                        source, server_ip, 80, "connections"):
                    total += int(value)
            return total

        wait_for(lambda: connections() >= CONNECTIONS, timeout=30, interval=0.5)
        logs = collector.logs().decode()
        assert "running in ebpf mode" in logs, logs[-2000:]
        assert connections() == CONNECTIONS, logs[-2000:]
    finally:
        collector.remove(force=True)


@pytest.mark.ebpf
def test_the_daemonset_capabilities_alone_load_the_tracer(redis_server, ebpf_ready):
    """Exactly the DaemonSet's capabilities (BPF, PERFMON, SYS_PTRACE), no
    other, given to a collector on this host: the eBPF tracer loads."""
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) missing")
    caps = daemonset()["spec"]["template"]["spec"]["containers"][0][
        "securityContext"]["capabilities"]["add"]
    bounding = "-all," + ",".join(f"+{c.lower()}" for c in caps)
    done = subprocess.run(
        ["setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--",
         sys.executable, "-m", "collector", "--duration", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "REDIS_URL": redis_server.url,
             "PORTOLAN_HOST_ID": f"caps-{TEST_SESSION}"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-2000:]
    assert "running in ebpf mode" in output, output[-2000:]
    assert "missing capabilities" not in output
