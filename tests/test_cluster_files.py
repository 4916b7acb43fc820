"""The cluster files (no cluster needed): the launcher files pass Ray's own schema and the checks `ray up` makes
before it contacts a cloud, the KubeRay RayJob runs the same command, and the 7B layout adds up to the GPUs the
cluster provides."""

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
AWS = REPO / "cluster.yaml"
ONPREM = REPO / "configs" / "cluster-onprem.yaml"
RAYJOB = REPO / "configs" / "kuberay-rayjob.yaml"
GPU_7B = REPO / "configs" / "gpu-7b.yaml"
LAUNCHER_FILES = [AWS, ONPREM]
# The command every file runs (cluster.yaml's header, the on-prem header, the RayJob's entrypoint).
TRAIN = ["selfplay", "train", "configs/gpu-7b.yaml", "ray.address=auto"]
SHARED = "/mnt/shared"
MODEL_KINDS = ("reward_model", "pairwise", "judge")  # preference kinds with a model of their own (one GPU on auto)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def header(path: Path) -> str:
    """The comment block at the top of a file."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return "\n".join(lines)


def start_commands(config: dict) -> list[str]:
    return [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_passes_rays_schema_and_the_checks_of_ray_up(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    raw = load(path)
    jsonschema.validate(raw, schema)  # the file as written: no field Ray does not know
    validate_config(prepare_config(raw))  # merged with the provider's defaults, as `ray up` does first


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_installs_the_cuda_build_mounts_shared_storage_and_exports_metrics(path):
    config = load(path)
    setup = "\n".join(config["setup_commands"])
    assert "SELFPLAY_EXTRA=cuda bash scripts/install.sh" in setup
    assert "mount -t nfs4" in setup and f" {SHARED})" in setup
    assert f"HF_HOME={SHARED}/" in setup  # the driver's hub snapshot path must exist on every node
    assert config["file_mounts"]["/home/ubuntu/selfplay"] == "."
    starts = start_commands(config)
    assert len(starts) == 2 and all("--metrics-export-port=8080" in c for c in starts)
    head = " ".join(config["head_start_ray_commands"])
    assert "--head" in head and "--dashboard-host=0.0.0.0" in head and "--autoscaling-config=" in head
    # Token authentication on every node, with the token made on the submitting machine.
    assert "RAY_AUTH_MODE=token" in setup
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_header_walks_from_ray_up_to_ray_down(path):
    text = header(path)
    name = path.relative_to(REPO).as_posix()
    for step in ("ray get-auth-token --generate", f"ray up {name}", f"ray dashboard {name}",
                 "export RAY_AUTH_MODE=token", "ray job logs --address http://127.0.0.1:8265 --follow",
                 f"ray down {name}"):
        assert step in text, step
    submit = re.search(r"^ray job submit (.*)$", text, re.MULTILINE)
    assert submit is not None
    options, command = submit.group(1).split(" -- ", 1)
    assert options == "--address http://127.0.0.1:8265 --working-dir ."
    assert shlex.split(command) == TRAIN
    assert text.index("ray up") < text.index("ray job submit") < text.index("ray down")


def test_aws_cluster_has_a_cpu_head_and_a_gpu_worker_type_that_starts_with_it():
    config = load(AWS)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if name != config["head_node_type"] and t["resources"].get("GPU", 0) > 0]
    assert len(gpu) == 1
    assert 1 <= gpu[0]["min_workers"] <= gpu[0]["max_workers"] <= config["max_workers"]


def test_rayjob_runs_the_same_command_on_a_cluster_with_shared_storage_and_metrics():
    docs = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]
    assert len(docs) == 1
    job = docs[0]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    entrypoint = shlex.split(spec["entrypoint"])
    assert entrypoint[:2] == TRAIN[:2] and entrypoint[3:] == TRAIN[3:]
    assert entrypoint[2].endswith("/" + TRAIN[2])  # the config inside the image's checkout
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # the Ray the project pins
    assert cluster["authOptions"]["mode"] == "token"
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        # KubeRay's rayStartParams is a map of strings: a bare 8080 is refused
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        pod = group["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert SHARED in mounts and claims[mounts[SHARED]] == "selfplay-shared"
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
        assert env["HF_HOME"].startswith(SHARED + "/")
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def gpus_of_layout(config: dict) -> dict[str, float]:
    """GPUs each role of a selfplay config asks for, read from the YAML alone: `auto` (or a key left out) is what
    it means with the CUDA build installed (learner 1 a rank, rollout tensor_parallel_size an engine, a
    preference model 1 a replica)."""
    def per(section: dict, auto: float) -> float:
        value = section.get("num_gpus", "auto")
        return auto if value == "auto" else value

    learner, rollout, preference = config["learner"], config["rollout"], config["preference"]
    tp = rollout.get("vllm", {}).get("tensor_parallel_size", 1)
    return {
        "learner": learner.get("num_ranks", 1) * per(learner, 1),
        "rollout": rollout.get("num_workers", 1) * per(rollout, tp),
        "preference": preference.get("num_replicas", 1) * per(
            preference, 1 if preference.get("kind") in MODEL_KINDS else 0),
    }


def test_gpu_7b_layout_adds_up_to_the_gpus_of_its_comment_and_of_the_clusters():
    config = load(GPU_7B)
    layout = gpus_of_layout(config)
    stated = re.search(r"^GPUs: (\d+) = ", header(GPU_7B), re.MULTILINE)
    assert stated is not None
    assert sum(layout.values()) == int(stated.group(1)) == 8
    assert layout == {"learner": 4, "rollout": 2, "preference": 2}
    # An engine's GPUs are its tensor-parallel ranks.
    assert config["rollout"]["num_gpus"] == config["rollout"]["vllm"]["tensor_parallel_size"]
    assert config["rollout"]["prompts_per_step"] % config["learner"]["num_ranks"] == 0
    aws = load(AWS)
    worker = next(t for t in aws["available_node_types"].values() if t["resources"].get("GPU", 0) > 0)
    assert worker["min_workers"] * worker["resources"]["GPU"] == sum(layout.values())
    rayjob = load(RAYJOB)["spec"]["rayClusterSpec"]
    assert sum(g["minReplicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
               for g in rayjob["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]) == 8


def test_gpu_7b_writes_to_shared_storage_and_joins_the_running_cluster():
    config = load(GPU_7B)
    assert config["run"]["output_dir"].startswith(SHARED + "/")
    assert config["ray"]["address"] == "auto"
    assert config["policy"]["model_path"] == "Qwen/Qwen2.5-7B-Instruct"
    assert config["learner"]["zero_stage"] == 3
    assert config.get("sync", {}).get("transport", "broadcast") == "broadcast"  # shared_memory is one node only


# Keys of the cluster-launch work that configs/gpu-7b.yaml uses (orchestration/config/schema.py gains them separately).
RESOURCE_KEYS = {"learner": ("num_gpus", "num_cpus", "resources"), "rollout": ("num_gpus", "num_cpus", "resources"),
                 "ray": ("placement_timeout_s",)}


def test_gpu_7b_config_validates_apart_from_the_resource_keys():
    from selfplay.orchestration.config.loading import config_from_dict

    data = load(GPU_7B)
    for section, keys in RESOURCE_KEYS.items():
        for key in keys:
            data[section].pop(key)
    config = config_from_dict(data)
    assert config.preference.kind == "reward_model" and config.resume == "auto"


def test_gpu_7b_config_loads_once_the_resource_keys_exist():
    from selfplay.orchestration.config.schema import LearnerConfig

    from selfplay.orchestration.config.loading import load_config

    if "num_gpus" not in LearnerConfig.model_fields:
        pytest.skip("learner.num_gpus and the other per-role resource keys are not in orchestration/config/schema.py yet")
    config = load_config(GPU_7B)
    assert config.preset_keys == [] and config.learner.num_ranks == 4


@pytest.mark.parametrize("name, ranks", [("one-gpu.yaml", 1), ("gpu-7b-colocated.yaml", 8)])
def test_colocated_gpu_configs_resolve(name, ranks):
    """The colocated GPU configs load as written (their GPU runs are not possible here): one engine per rank."""
    from selfplay.orchestration.cluster.placement import role_counts
    from selfplay.orchestration.config.loading import load_config

    config = load_config(REPO / "configs" / name)
    assert config.rollout.colocate and config.rollout.engine == "vllm" and config.preset_keys == []
    assert role_counts(config)["rollout"] == 0 and config.rollout.num_workers == config.learner.num_ranks == ranks
    # the learner's and the reward model's bundles share GPUs: together within whole GPUs
    assert config.learner.num_gpus + config.preference.num_gpus <= 1
