"""The manifests of a TrainingJob's children, built from a spec and the configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from kubemaker.api.training import TrainingJob, TrainingJobSpec
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError, validation_message
from kubemaker.builders.owner import Owner
from kubemaker.builders.training import (
    active_deadline_seconds,
    build_job,
    build_service,
    pod_env_value,
    resolve_image,
    resolve_resources,
)
from kubemaker.config import OperatorConfig
from kubemaker_runtime.protocol import AGENT_CONFIG_ENV, AgentConfig

OWNER = Owner(name="bank", namespace="ml", uid="1234-abcd", kind="TrainingJob")


def make_spec(**overrides: Any) -> TrainingJobSpec:
    spec: dict[str, Any] = {
        "algorithmSpecification": {"algorithmName": "xgboost"},
        "hyperParameters": {"num_round": "50", "objective": "binary:logistic"},
        "inputDataConfig": [
            {"channelName": "train", "uri": "s3://data/bank/train", "contentType": "text/csv"},
            {
                "channelName": "validation",
                "dataSource": {
                    "s3DataSource": {
                        "s3Uri": "s3://data/bank/validation",
                        "s3DataDistributionType": "ShardedByS3Key",
                    }
                },
                "compressionType": "Gzip",
            },
        ],
        "outputDataConfig": {"s3OutputPath": "s3://models/bank/"},
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
    }
    spec.update(overrides)
    return TrainingJobSpec.model_validate(spec)


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]
    return result


def container(job: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(job)
    for item in spec["containers"] + spec["initContainers"]:
        if item["name"] == name:
            return dict(item)
    raise AssertionError(f"no container {name}")


def agent_config(job: dict[str, Any]) -> AgentConfig:
    value = pod_env_value(container(job, "agent")["env"], AGENT_CONFIG_ENV)
    assert value is not None
    return AgentConfig.model_validate_json(value)


def env_of(job: dict[str, Any], name: str = "algorithm") -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job, name)["env"]}


CONFIG = OperatorConfig()


def test_an_indexed_job_with_one_pod_per_instance() -> None:
    spec = make_spec(resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 3})
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["name"] == "bank"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kubemaker.io/v1alpha1",
            "kind": "TrainingJob",
            "name": "bank",
            "uid": "1234-abcd",
            "controller": True,
        }
    ]
    labels = job["metadata"]["labels"]
    assert labels[naming.LABEL_TRAINING_JOB] == "bank"
    assert labels[naming.LABEL_ATTEMPT] == "0"
    assert labels["app.kubernetes.io/managed-by"] == "kubemaker"
    s = job["spec"]
    assert s["completionMode"] == "Indexed"
    assert s["completions"] == s["parallelism"] == 3
    assert s["backoffLimit"] == 0
    assert "suspend" not in s
    # The pods carry the same labels (the Service and the controller select on them).
    assert job["spec"]["template"]["metadata"]["labels"] == labels


def test_the_pod_failure_policy_separates_disruptions_from_algorithm_errors() -> None:
    job = build_job(make_spec(), CONFIG, owner=OWNER, attempt=0)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    # Disruptions first: an evicted pod whose algorithm was killed is a platform failure.
    assert rules[0] == {
        "action": "FailJob",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"] == {
        "containerName": "algorithm",
        "operator": "NotIn",
        "values": [0],
    }
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_later_attempts_get_their_own_job_and_host_names() -> None:
    spec = make_spec(resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 2})
    job = build_job(spec, CONFIG, owner=OWNER, attempt=2)
    assert job["metadata"]["name"] == "bank-r2"
    assert job["metadata"]["labels"][naming.LABEL_ATTEMPT] == "2"
    config = agent_config(job)
    assert config.hosts == ["bank-r2-0", "bank-r2-1"]
    assert env_of(job)["SM_CURRENT_HOST"] == "bank-r2-$(KUBEMAKER_HOST_INDEX)"


def test_names_are_deterministic_and_fit_host_names() -> None:
    assert naming.job_name("bank", 0) == "bank"
    assert naming.job_name("bank", 1) == "bank-r1"
    longest = "a" * 52  # the API's limit
    assert naming.child_base(longest) == longest
    host = naming.host_names(naming.job_name(longest, 30), 1000)[-1]
    assert len(host) <= 63
    # Longer names (not accepted by the API, but never trusted) are shortened with a hash.
    shortened = naming.child_base("b" * 80)
    assert len(shortened) <= 55 and shortened != naming.child_base("b" * 81)
    assert naming.child_base("b" * 80) == shortened


def test_the_pod_shape() -> None:
    job = build_job(make_spec(), CONFIG, owner=OWNER, attempt=0)
    spec = pod_spec(job)
    assert spec["subdomain"] == "bank"
    assert spec["dnsConfig"] == {"searches": ["bank.ml.svc.cluster.local"]}
    assert spec["enableServiceLinks"] is False
    assert spec["terminationGracePeriodSeconds"] >= 120
    agent = container(job, "agent")
    assert spec["initContainers"] == [agent]
    assert agent["restartPolicy"] == "Always"  # a native sidecar
    assert agent["image"] == CONFIG.images.agent
    assert agent["args"] == ["sidecar"]
    assert agent["startupProbe"]["exec"]["command"] == ["kubemaker-agent", "probe"]
    algorithm = container(job, "algorithm")
    assert spec["containers"] == [algorithm]
    assert algorithm["image"] == CONFIG.images.algorithms["xgboost"]
    assert algorithm["args"] == ["train"]
    assert algorithm["terminationMessagePolicy"] == "FallbackToLogsOnError"
    expected_mounts = {
        "/opt/ml/input": "input",
        "/opt/ml/model": "model",
        "/opt/ml/output": "output",
        "/opt/ml/checkpoints": "checkpoints",
    }
    for item in (agent, algorithm):
        work = [m for m in item["volumeMounts"] if m["name"] == "opt-ml"]
        assert {m["mountPath"]: m["subPath"] for m in work} == expected_mounts
    assert {m["name"] for m in algorithm["volumeMounts"]} == {"opt-ml"}
    # The agent's root filesystem is read-only; it writes its state and archives to /tmp.
    assert [m for m in agent["volumeMounts"] if m["name"] != "opt-ml"] == [
        {"name": "agent-tmp", "mountPath": "/tmp"}
    ]
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == "opt-ml")
    assert volume["emptyDir"] == {"sizeLimit": "30Gi"}
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations[naming.ANNOTATION_MODEL_ARTIFACTS] == (
        "s3://models/bank/bank/output/model.tar.gz"
    )


def test_the_agent_config() -> None:
    job = build_job(make_spec(), CONFIG, owner=OWNER, attempt=0)
    config = agent_config(job)
    assert config.job_name == "bank"
    assert config.hosts == ["bank-0"]
    assert config.instance_type == "ml.m5.xlarge"
    assert config.hyper_parameters == {"num_round": "50", "objective": "binary:logistic"}
    assert config.output_path == "s3://models/bank/bank/output"
    train, validation = config.channels
    assert (train.name, train.uri, train.content_type) == (
        "train",
        "s3://data/bank/train",
        "text/csv",
    )
    assert train.distribution == "FullyReplicated" and train.input_mode == "File"
    assert validation.distribution == "ShardedByS3Key"
    assert validation.compression == "Gzip"
    assert config.checkpoint is None
    assert config.storage.s3_endpoint_url is None


def test_pipe_mode_per_channel_and_by_default() -> None:
    spec = make_spec(
        algorithmSpecification={"algorithmName": "xgboost", "trainingInputMode": "Pipe"},
        inputDataConfig=[
            {"channelName": "train", "uri": "s3://data/t"},
            {"channelName": "extra", "uri": "s3://data/e", "inputMode": "File"},
        ],
    )
    modes = {
        c.name: c.input_mode
        for c in agent_config(build_job(spec, CONFIG, owner=OWNER, attempt=0)).channels
    }
    assert modes == {"train": "Pipe", "extra": "File"}


def test_sm_environment_of_the_algorithm() -> None:
    spec = make_spec(
        resourceConfig={"instanceType": "ml.p3.2xlarge", "instanceCount": 2},
        environment={"MY_FLAG": "1", "SM_LOG_LEVEL": "10"},
    )
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    env = env_of(job)
    names = [e["name"] for e in container(job, "algorithm")["env"]]
    # Defined first, so that later values can expand $(KUBEMAKER_HOST_INDEX).
    assert names[0] == "KUBEMAKER_HOST_INDEX"
    assert env["KUBEMAKER_HOST_INDEX"] == {
        "fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        }
    }
    assert json.loads(env["SM_HOSTS"]) == ["bank-0", "bank-1"]
    assert env["SM_CURRENT_HOST"] == "bank-$(KUBEMAKER_HOST_INDEX)"
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert env["SM_CHANNEL_VALIDATION"] == "/opt/ml/input/data/validation"
    assert env["SM_NUM_GPUS"] == "1"
    assert env["SM_NUM_CPUS"] == "8"
    assert json.loads(env["SM_HPS"]) == {"num_round": 50, "objective": "binary:logistic"}
    assert env["SM_HP_NUM_ROUND"] == "50"
    assert env["TRAINING_JOB_NAME"] == "bank"
    resource_config = json.loads(env["SM_RESOURCE_CONFIG"])
    assert resource_config["current_host"] == "bank-$(KUBEMAKER_HOST_INDEX)"
    assert resource_config["hosts"] == ["bank-0", "bank-1"]
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["current_host"] == "bank-$(KUBEMAKER_HOST_INDEX)"
    assert training_env["master_hostname"] == "bank-0"
    assert "is_master" not in training_env  # differs per pod on a multi-host job
    # The spec's environment wins over SM_* and is passed as it is.
    assert env["SM_LOG_LEVEL"] == "10"
    assert names.count("SM_LOG_LEVEL") == 1
    assert env["MY_FLAG"] == "1"


def test_single_host_training_env_keeps_is_master() -> None:
    env = env_of(build_job(make_spec(), CONFIG, owner=OWNER, attempt=0))
    assert json.loads(env["SM_TRAINING_ENV"])["is_master"] is True


def test_resources_from_the_catalog() -> None:
    resources = resolve_resources(make_spec(), CONFIG)
    assert resources.requests == {"cpu": "4", "memory": "16Gi"}
    assert resources.limits == {"memory": "16Gi"}
    assert resources.gpus == 0 and resources.cpus == 4
    assert resources.node_selector == {} and resources.tolerations == []
    job = build_job(make_spec(), CONFIG, owner=OWNER, attempt=0)
    assert container(job, "algorithm")["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi"},
    }
    assert "nodeSelector" not in pod_spec(job)


def test_gpu_instance_types_request_gpus_and_land_on_gpu_nodes() -> None:
    spec = make_spec(resourceConfig={"instanceType": "ml.p3.2xlarge"})
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    resources = container(job, "algorithm")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in resources["requests"]
    assert pod_spec(job)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod_spec(job)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_pod_overrides_win() -> None:
    spec = make_spec(
        resourceConfig={"instanceType": "ml.p3.2xlarge"},
        podOverrides={
            "resources": {
                "requests": {"cpu": "2", "memory": "4Gi"},
                "limits": {"memory": "6Gi", "nvidia.com/gpu": 2},
            },
            "nodeSelector": {"pool": "training", "nvidia.com/gpu.present": "yes"},
            "tolerations": [{"key": "pool", "operator": "Equal", "value": "training"}],
            "labels": {"team": "risk", naming.LABEL_TRAINING_JOB: "hijack"},
            "annotations": {"sidecar.istio.io/inject": "false"},
            "serviceAccountName": "trainer",
            "priorityClassName": "batch-low",
            "imagePullSecrets": [{"name": "registry"}],
        },
    )
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    resources = container(job, "algorithm")["resources"]
    assert resources == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "6Gi", "nvidia.com/gpu": "2"},
    }
    spec_ = pod_spec(job)
    assert spec_["nodeSelector"] == {"nvidia.com/gpu.present": "yes", "pool": "training"}
    assert {"key": "pool", "operator": "Equal", "value": "training"} in spec_["tolerations"]
    assert spec_["serviceAccountName"] == "trainer"
    assert spec_["priorityClassName"] == "batch-low"
    assert spec_["imagePullSecrets"] == [{"name": "registry"}]
    metadata = job["spec"]["template"]["metadata"]
    assert metadata["labels"]["team"] == "risk"
    assert metadata["labels"][naming.LABEL_TRAINING_JOB] == "bank"  # ours win
    assert metadata["annotations"]["sidecar.istio.io/inject"] == "false"
    assert env_of(job)["SM_NUM_GPUS"] == "2" and env_of(job)["SM_NUM_CPUS"] == "2"


def test_overrides_can_remove_the_gpu() -> None:
    spec = make_spec(
        resourceConfig={"instanceType": "ml.p3.2xlarge"},
        podOverrides={"resources": {"limits": {"nvidia.com/gpu": 0}}},
    )
    resources = resolve_resources(spec, CONFIG)
    assert resources.gpus == 0 and "nvidia.com/gpu" not in resources.limits
    assert resources.node_selector == {}


def test_catalog_placement_and_spot() -> None:
    config = OperatorConfig.model_validate(
        {
            "instanceTypes": {
                "ml.m5.xlarge": {
                    "cpu": "4",
                    "memory": "16Gi",
                    "nodeSelector": {"node.kubernetes.io/instance-type": "m5.xlarge"},
                }
            },
            "spot": {
                "nodeSelector": {"lifecycle": "spot"},
                "tolerations": [{"key": "spot", "operator": "Exists"}],
            },
        }
    )
    spec = make_spec(enableManagedSpotTraining=True)
    resources = resolve_resources(spec, config)
    assert resources.node_selector == {
        "node.kubernetes.io/instance-type": "m5.xlarge",
        "lifecycle": "spot",
    }
    assert resources.tolerations == [{"key": "spot", "operator": "Exists"}]


def test_unknown_instance_type_is_a_user_error_naming_the_field() -> None:
    spec = make_spec(resourceConfig={"instanceType": "ml.nope.large"})
    with pytest.raises(SpecError) as caught:
        build_job(spec, CONFIG, owner=OWNER, attempt=0)
    assert caught.value.field == "spec.resourceConfig.instanceType"
    assert "ml.nope.large" in str(caught.value)


def test_images_from_the_catalog_or_the_spec() -> None:
    assert resolve_image(make_spec(), CONFIG) == CONFIG.images.algorithms["xgboost"]
    byoc = make_spec(algorithmSpecification={"trainingImage": "registry.example/algo:1"})
    assert resolve_image(byoc, CONFIG) == "registry.example/algo:1"
    with pytest.raises(SpecError, match="algorithmName"):
        resolve_image(make_spec(algorithmSpecification={"algorithmName": "lightgbm"}), CONFIG)
    script = make_spec(
        algorithmSpecification={"framework": "mxnet", "entryPoint": "train.py"},
    )
    assert resolve_image(script, CONFIG) == CONFIG.images.frameworks["mxnet"]
    with pytest.raises(SpecError, match="framework"):
        resolve_image(
            make_spec(algorithmSpecification={"framework": "jax", "entryPoint": "t.py"}), CONFIG
        )


def test_script_mode_hyperparameters() -> None:
    spec = make_spec(
        algorithmSpecification={
            "framework": "mxnet",
            "entryPoint": "mnist.py",
            "sourceDir": "s3://code/mnist/sourcedir.tar.gz",
        },
        hyperParameters={"epochs": "5"},
    )
    config = agent_config(build_job(spec, CONFIG, owner=OWNER, attempt=0))
    assert config.hyper_parameters == {
        "epochs": "5",
        "sagemaker_program": "mnist.py",
        "sagemaker_submit_directory": "s3://code/mnist/sourcedir.tar.gz",
        "sagemaker_job_name": "bank",
    }


def test_storage_settings_and_credentials() -> None:
    config = OperatorConfig.model_validate(
        {
            "storage": {
                "s3EndpointUrl": "http://minio:9000",
                "region": "eu-west-1",
                "credentialsSecret": "default-keys",
            }
        }
    )
    job = build_job(make_spec(), config, owner=OWNER, attempt=0)
    settings = agent_config(job).storage
    assert settings.s3_endpoint_url == "http://minio:9000" and settings.region == "eu-west-1"
    agent_env = env_of(job, "agent")
    assert agent_env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "default-keys", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert agent_env["AWS_SESSION_TOKEN"] == {
        "secretKeyRef": {"name": "default-keys", "key": "AWS_SESSION_TOKEN", "optional": True}
    }
    # The algorithm gets the same storage (SageMaker images read S3 themselves).
    algorithm_env = env_of(job)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert algorithm_env[key] == agent_env[key]
    assert algorithm_env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert algorithm_env["AWS_REGION"] == algorithm_env["AWS_DEFAULT_REGION"] == "eu-west-1"
    # The spec's own storage wins over the operator's defaults.
    own = make_spec(
        storage={
            "credentialsSecretRef": {"name": "team-keys"},
            "s3EndpointUrl": "https://s3.example",
        }
    )
    job = build_job(own, config, owner=OWNER, attempt=0)
    assert env_of(job, "agent")["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "team-keys"
    assert agent_config(job).storage.s3_endpoint_url == "https://s3.example"
    assert agent_config(job).storage.region == "eu-west-1"
    assert env_of(job)["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "team-keys"
    assert env_of(job)["AWS_ENDPOINT_URL_S3"] == "https://s3.example"
    # No Secret, endpoint or region anywhere: the pod's identity (IRSA, Workload
    # Identity) and the SDK's defaults are used.
    plain = build_job(make_spec(), CONFIG, owner=OWNER, attempt=0)
    for name in ("agent", "algorithm"):
        assert not any(key.startswith("AWS_") for key in env_of(plain, name))


def test_script_mode_reads_its_source_dir_with_the_jobs_storage() -> None:
    config = OperatorConfig.model_validate(
        {"storage": {"s3EndpointUrl": "http://minio:9000", "credentialsSecret": "keys"}}
    )
    spec = make_spec(
        algorithmSpecification={
            "framework": "mxnet",
            "entryPoint": "mnist.py",
            "sourceDir": "s3://code/mnist/sourcedir.tar.gz",
        },
        environment={"AWS_ENDPOINT_URL_S3": "http://my-own-s3:9000"},
    )
    job = build_job(spec, config, owner=OWNER, attempt=0)
    env = env_of(job)
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "keys", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    # The spec's environment wins, and the name appears once.
    assert env["AWS_ENDPOINT_URL_S3"] == "http://my-own-s3:9000"
    names = [e["name"] for e in container(job, "algorithm")["env"]]
    assert names.count("AWS_ENDPOINT_URL_S3") == 1


def test_a_pvc_source_dir_is_mounted_read_only_into_the_algorithm() -> None:
    spec = make_spec(
        algorithmSpecification={
            "framework": "mxnet",
            "entryPoint": "mnist.py",
            "sourceDir": "pvc://code/mnist",
        },
        inputDataConfig=[{"channelName": "train", "uri": "pvc://datasets/mnist/train"}],
    )
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["pvc-code"]["persistentVolumeClaim"] == {"claimName": "code"}
    agent = {m["mountPath"]: m for m in container(job, "agent")["volumeMounts"]}
    algorithm = {m["mountPath"]: m for m in container(job, "algorithm")["volumeMounts"]}
    # Where the framework's storage code looks for pvc://code/mnist: the agent's pvc root.
    assert agent_config(job).storage.pvc_root == "/kubemaker/pvc"
    assert algorithm["/kubemaker/pvc/code"] == {
        "name": "pvc-code",
        "mountPath": "/kubemaker/pvc/code",
        "readOnly": True,
    }
    assert "readOnly" not in agent["/kubemaker/pvc/code"]
    # Only the code's claim: the data is the agent's to stage.
    assert "/kubemaker/pvc/datasets" in agent and "/kubemaker/pvc/datasets" not in algorithm


def test_pvc_sources_are_mounted_into_the_agent() -> None:
    spec = make_spec(
        inputDataConfig=[{"channelName": "train", "uri": "pvc://datasets/bank/train"}],
        outputDataConfig={"s3OutputPath": "pvc://models/out"},
        checkpointConfig={"s3Uri": "pvc://models/ckpt", "localPath": "/opt/ml/checkpoints"},
    )
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["pvc-datasets"]["persistentVolumeClaim"] == {"claimName": "datasets"}
    assert volumes["pvc-models"]["persistentVolumeClaim"] == {"claimName": "models"}
    mounts = {m["mountPath"]: m["name"] for m in container(job, "agent")["volumeMounts"]}
    assert mounts["/kubemaker/pvc/datasets"] == "pvc-datasets"
    assert mounts["/kubemaker/pvc/models"] == "pvc-models"
    # The algorithm does not get the claims.
    assert all(m["name"] == "opt-ml" for m in container(job, "algorithm")["volumeMounts"])


def test_checkpoints_at_a_custom_local_path() -> None:
    spec = make_spec(checkpointConfig={"s3Uri": "s3://ckpt/bank", "localPath": "/ckpt"})
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    config = agent_config(job)
    assert config.checkpoint is not None
    assert config.checkpoint.uri == "s3://ckpt/bank"
    assert config.checkpoint.local_path == "/opt/ml/checkpoints"  # the agent's own mount
    mounts = {m["mountPath"]: m["subPath"] for m in container(job, "algorithm")["volumeMounts"]}
    assert mounts["/ckpt"] == "checkpoints"


def test_kueue_jobs_are_created_suspended_with_the_queue_label() -> None:
    job = build_job(make_spec(queueName="team-a"), CONFIG, owner=OWNER, attempt=0)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_active_deadline_is_the_remaining_runtime_plus_a_backstop() -> None:
    spec = make_spec(stoppingCondition={"maxRuntimeInSeconds": 600})
    job = build_job(spec, CONFIG, owner=OWNER, attempt=0)
    deadline = job["spec"]["activeDeadlineSeconds"]
    assert deadline > 600  # the operator stops the job first, gracefully
    assert active_deadline_seconds(spec, runtime_used=500) == deadline - 500
    assert active_deadline_seconds(spec, runtime_used=10_000) == deadline - 599


def test_the_headless_service() -> None:
    service = build_service(OWNER)
    assert service["metadata"]["name"] == "bank"
    assert service["metadata"]["ownerReferences"][0]["uid"] == "1234-abcd"
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {naming.LABEL_TRAINING_JOB: "bank"},
        "publishNotReadyAddresses": True,
    }


def test_validation_messages_name_the_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        TrainingJobSpec.model_validate(
            {
                "algorithmSpecification": {"algorithmName": "xgboost"},
                "outputDataConfig": {"s3OutputPath": "s3://b/o"},
                "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 0},
            }
        )
    message = validation_message(caught.value)
    assert "spec.resourceConfig.instanceCount" in message


def test_every_attempt_runs_the_image_the_job_recorded() -> None:
    job = build_job(make_spec(), OperatorConfig(), owner=OWNER, attempt=1, image="own/xgb:1")
    containers = job["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers if c["name"] == "algorithm"] == ["own/xgb:1"]


def test_a_whole_objects_error_is_named_from_its_root() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingJob.model_validate(
            {"metadata": {"name": "bank"}, "spec": {**make_spec().dump(), "stop": "maybe"}}
        )
    assert validation_message(caught.value, prefix="").startswith("spec.stop: ")


def test_pods_satisfy_pod_security_restricted_by_default() -> None:
    pod = build_job(make_spec(), CONFIG, owner=OWNER, attempt=0)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for item in pod["initContainers"] + pod["containers"]:
        assert item["securityContext"]["allowPrivilegeEscalation"] is False
        assert item["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_pod_overrides_set_security_contexts_field_by_field() -> None:
    spec = make_spec(
        podOverrides={
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "fsGroup": 100},
            "containerSecurityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
        }
    )
    pod = build_job(spec, CONFIG, owner=OWNER, attempt=0)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "fsGroup": 100,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [algorithm] = pod["containers"]
    assert algorithm["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["SYS_PTRACE"]},
    }
    # The operator's own container keeps its own settings.
    [agent] = pod["initContainers"]
    assert agent["securityContext"]["capabilities"] == {"drop": ["ALL"]}
