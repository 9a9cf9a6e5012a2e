"""deploy/: the image and the Kubernetes Indexed Job that start a run's shards together.
No cluster runs here: the manifests are read into the Kubernetes client's own models
(what the API server would accept) and the shard's command line is expanded by a real
shell and parsed by moodle_load.py's own parser."""

import json
import os
import subprocess
from datetime import datetime

import pytest
import yaml
from kubernetes.client import ApiClient

from helpers import ROOT
from moodleload.options import build_parser
from moodleload.shards import parse_shard, parse_start_at

DEPLOY = os.path.join(ROOT, "deploy")


class _Answer:
    """What older clients' ApiClient.deserialize read: an API server's answer object."""

    def __init__(self, text: str):
        self.data = text


def job(name: str):
    """The manifest as the client's V1Job, read the way it reads an API server's answer."""
    with open(os.path.join(DEPLOY, "kubernetes", name)) as handle:
        text = json.dumps(yaml.safe_load(handle))
    try:
        return ApiClient().deserialize(text, "V1Job", "application/json")
    except TypeError:  # an older client: (response, type)
        return ApiClient().deserialize(_Answer(text), "V1Job")


def shard_argv(container, index: int, start_at: str) -> list:
    """The shard's moodle_load.py arguments as the pod's shell gives them for ``index``."""
    assert container.command == ["/bin/sh", "-c"] and len(container.args) == 1
    script = container.args[0]
    assert script.startswith("exec python3 /app/moodle_load.py ")
    printed = subprocess.run(["/bin/sh", "-c", script.replace("exec python3 /app/moodle_load.py", "printf '%s\\n'", 1)],
                             env={"JOB_COMPLETION_INDEX": str(index), "START_AT": start_at, "PATH": os.defpath},
                             capture_output=True, text=True, check=True)
    return printed.stdout.splitlines()


@pytest.fixture(scope="module")
def load_job():
    return job("load-job.yaml")


def test_the_load_job_is_indexed_and_never_runs_a_shard_again_late(load_job):
    spec = load_job.spec
    assert spec.completion_mode == "Indexed" and spec.completions == spec.parallelism
    assert spec.backoff_limit_per_index == 0 and spec.pod_replacement_policy == "Failed"
    assert spec.template.spec.restart_policy == "Never"


def test_each_pod_is_the_shard_of_its_completion_index(load_job):
    container = load_job.spec.template.spec.containers[0]
    shards = load_job.spec.completions
    for index in range(shards):
        args = build_parser().parse_args(shard_argv(container, index, "2026-12-05T09:00:00Z"))
        assert parse_shard(args.shard) == (index + 1, shards)
        assert args.output == f"/results/shard-{index + 1}.json"


def test_every_shard_reads_one_start_at_set_once_in_the_manifest(load_job):
    container = load_job.spec.template.spec.containers[0]
    start_at = {variable.name: variable.value for variable in container.env}["START_AT"]
    moment = datetime.fromisoformat(start_at.replace("Z", "+00:00")).timestamp()
    assert parse_start_at(start_at, moment - 60) == moment  # a time with its zone: every machine reads it alike
    args = build_parser().parse_args(shard_argv(container, 1, start_at))
    assert args.start_at == start_at


def test_the_config_and_its_passwords_come_from_a_secret_never_from_the_manifest(load_job):
    pod = load_job.spec.template.spec
    container = pod.containers[0]
    args = build_parser().parse_args(shard_argv(container, 0, "2026-12-05T09:00:00Z"))
    secret_volumes = {volume.name for volume in pod.volumes if volume.secret is not None}
    mounts = {mount.mount_path: mount.name for mount in container.volume_mounts}
    assert mounts[os.path.dirname(args.config)] in secret_volumes
    for name in ("load-job.yaml", "merge-job.yaml"):
        with open(os.path.join(DEPLOY, "kubernetes", name)) as handle:
            text = handle.read().lower()
        assert "password:" not in text and "passw0rd" not in text and "--db-pass" not in text
    assert [variable.name for variable in container.env] == ["START_AT"]
    assert pod.security_context.run_as_user != 0


def test_the_merge_job_merges_every_shard_file_the_load_job_writes(load_job):
    merge = job("merge-job.yaml").spec.template.spec
    script = merge.containers[0].args[0]
    assert script.startswith("exec python3 /app/moodle_load.py --merge /results/shard-*.json --output ")
    claims = {volume.persistent_volume_claim.claim_name for spec in (merge, load_job.spec.template.spec)
              for volume in spec.volumes if volume.persistent_volume_claim is not None}
    assert claims == {"moodle-load-results"}


def test_the_image_runs_moodle_load_and_installs_everything_at_build_time():
    with open(os.path.join(DEPLOY, "Dockerfile")) as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert lines[-1] == 'ENTRYPOINT ["python3", "/app/moodle_load.py"]'
    install = lines.index("RUN pip install --no-cache-dir -r requirements.txt")
    assert lines.index("COPY requirements.txt .") < install < lines.index("COPY moodleload ./moodleload")
    with open(os.path.join(DEPLOY, "Dockerfile.dockerignore")) as handle:
        kept = {line.strip() for line in handle if line.startswith("!")}
    assert kept == {"!requirements.txt", "!moodle_load.py", "!set_moodle_passwords.py", "!moodleload/"}
