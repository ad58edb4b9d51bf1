"""The README's compose steps, followed line by line, bring up a working stack.

A copy of the checkout runs the Deploy section's commands verbatim; the
environment only moves the ports, the project name and the image tag out of
the way of other stacks (docker-compose lets it override .env) and fixes the
admin password. Then: every service healthy, the collector not privileged and
holding only its listed capabilities, and a browser logged in to the web
container's map sees the connections between two test containers, counted.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from collector.schema import container_node_id, host_node_id
from tests.conftest import TEST_SESSION, free_port, require, wait_for
from tests.deploy.conftest import TAG
from tests.deploy.stack import (
    ROOT,
    cap_mask,
    compose,
    compose_service,
    copy_checkout,
    effective_caps_of,
    readme_deploy_steps,
)

pytestmark = [pytest.mark.docker, pytest.mark.browser]

PASSWORD = "deploy-test-pw-7Q"
CONNECTIONS = 7


def project_containers(docker_client, project: str) -> dict:
    found = docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"})
    return {c.labels["com.docker.compose.service"]: c for c in found}


def all_healthy(docker_client, project: str) -> bool:
    services = project_containers(docker_client, project)
    if set(services) != {"redis", "collector", "analyzer", "builder", "web"}:
        return False
    for c in services.values():
        state = c.attrs["State"]
        if state["Status"] != "running":
            return False
        if "Health" in state and state["Health"]["Status"] != "healthy":
            return False
    return True


@pytest.fixture(scope="module")
def stack(docker_client, deploy_images, tmp_path_factory):
    """The compose stack, started by the README's steps; torn down after."""
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout"))
    project = f"ptdeploy{TEST_SESSION}"
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
        "COMPOSE_PROJECT_NAME": project, "PORTOLAN_IMAGE_TAG": TAG,
        "PORTOLAN_PORT": str(free_port()), "PORTOLAN_REDIS_PORT": str(free_port()),
        "PORTOLAN_ADMIN_PASSWORD": PASSWORD, "PORTOLAN_HOST_ID": f"dp-{TEST_SESSION}",
    }
    try:
        for step in readme_deploy_steps((ROOT / "README.md").read_text()):
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", step],
                                  cwd=checkout, env=env, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"README step failed: {step}\n{done.stderr}"
        healthy = wait_for(lambda: all_healthy(docker_client, project),
                           timeout=180, interval=1)
        logs = compose(["logs", "--tail", "30"], checkout, env).stdout
        assert healthy, f"stack not healthy:\n{logs[-4000:]}"
        yield {"project": project, "env": env, "checkout": checkout,
               "url": f"http://127.0.0.1:{env['PORTOLAN_PORT']}",
               "host": env["PORTOLAN_HOST_ID"],
               "services": project_containers(docker_client, project)}
    finally:
        compose(["down", "-v", "--remove-orphans"], checkout, env)


def test_readme_steps_bring_the_stack_to_healthy_with_a_least_privileged_collector(
        stack):
    collector = stack["services"]["collector"]
    host_config = collector.attrs["HostConfig"]
    listed = compose_service("collector")["cap_add"]
    assert host_config["Privileged"] is False
    assert host_config["CapDrop"] == ["ALL"]
    assert sorted(host_config["CapAdd"]) == sorted(listed)
    assert effective_caps_of(collector) == cap_mask(listed)
    assert host_config["PidMode"] == "host"
    mounts = collector.attrs["Mounts"]
    assert mounts, "the collector has no mounts to check"
    assert all(not m["RW"] for m in mounts), mounts
    logs = collector.logs().decode()
    assert "running in ebpf mode" in logs, logs[-2000:]


def test_map_in_the_web_container_shows_the_connection_with_its_count(
        stack, containers):
    require(os.path.exists("/usr/bin/chromium"), "Debian's chromium not installed")
    from playwright.sync_api import sync_playwright

    from tests.browser.test_map import CHROMIUM, CHROMIUM_ARGS

    server = containers.run("httpd -f -p 80 -h /var/www")
    server_ip = containers.ip(server)
    # It talks once told to (/tmp/go): when the map shows both containers,
    # the collector knows them.
    client = containers.run(
        "until [ -e /tmp/go ]; do sleep 0.1; done; "
        f"for i in $(seq {CONNECTIONS}); do "
        f"wget -q -O /dev/null http://{server_ip}/; done; sleep 600")
    source = container_node_id(stack["host"], client.id)
    target = container_node_id(stack["host"], server.id)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(stack["url"] + "/")
        assert "/login/" in page.url
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        page.goto(f"{stack['url']}/?level=container&focus={host_node_id(stack['host'])}")
        try:
            page.wait_for_function(
                """(ids) => { const m = window.portolanMap;
                    const on = new Set(m ? m.summary().nodes.map((n) => n.id) : []);
                    return ids.every((id) => on.has(id)); }""",
                arg=[source, target], timeout=60_000)
        except Exception:  # noqa: BLE001 - say what the map shows instead
            seen = page.evaluate("() => window.portolanMap?.summary()")
            pytest.fail(f"{source} and {target} not both on the map: {seen}")
        # (The test image's busybox has no touch applet: the shell makes it.)
        assert client.exec_run(["sh", "-c", ": > /tmp/go"]).exit_code == 0
        # Until the client's last connect is reported: the edge's count.
        try:
            page.wait_for_function(
                """([s, t, n]) => window.portolanMap.summary().edges.some(
                      (e) => e.source === s && e.target === t
                             && e.connections >= n)""",
                arg=[source, target, CONNECTIONS], timeout=60_000)
        except Exception:  # noqa: BLE001 - say what the map counted instead
            seen = page.evaluate("() => window.portolanMap.summary().edges")
            pytest.fail(f"no edge {source} -> {target} with {CONNECTIONS} "
                        f"connections on the map: {seen}")
        edges = page.evaluate("() => window.portolanMap.summary().edges")
        browser.close()
    edge = next(e for e in edges if e["source"] == source and e["target"] == target)
    assert edge["connections"] == CONNECTIONS, edge
