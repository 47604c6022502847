"""The BatchTransform's Job, built from a spec, its resolved model and the configuration:
one Indexed Job of instanceCount pods, each with the model fetched, the model server as
a native sidecar and the transformer."""

from __future__ import annotations

from typing import Any

from kubemaker.api.transform import BatchTransformSpec
from kubemaker.builders import naming
from kubemaker.builders.endpoint import ServedModel
from kubemaker.builders.owner import Owner
from kubemaker.builders.transform import LABEL_BATCH_TRANSFORM, build_job
from kubemaker.config import OperatorConfig
from kubemaker_runtime.protocol import TRANSFORM_CONFIG_ENV, TransformConfig

CONFIG = OperatorConfig()
OWNER = Owner(name="bank-test", namespace="ml", uid="bt-1234", kind="BatchTransform")
MODEL = ServedModel(
    "s3://models/bank/model.tar.gz",
    "registry.example/xgboost:1.7",
    {"SAGEMAKER_PROGRAM": "inference.py", "MODEL_THREADS": "2"},
)


def make_spec(
    instances: int = 3, instance_type: str = "ml.m5.large", **extra: Any
) -> BatchTransformSpec:
    return BatchTransformSpec.model_validate(
        {
            "model": {"modelDataUrl": MODEL.model_data_url, "image": MODEL.image},
            "transformInput": {
                "uri": "s3://data/bank/test/",
                "contentType": "text/csv",
                "splitType": "Line",
            },
            "transformOutput": {"s3OutputPath": "s3://data/bank/out/", "assembleWith": "Line"},
            "transformResources": {"instanceType": instance_type, "instanceCount": instances},
            **extra,
        }
    )


def build(spec: BatchTransformSpec | None = None) -> dict[str, Any]:
    job: dict[str, Any] = build_job(spec or make_spec(), MODEL, CONFIG, owner=OWNER)
    return job


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]
    return result


def container(job: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(job)
    for item in spec["initContainers"] + spec["containers"]:
        if item["name"] == name:
            return dict(item)
    raise AssertionError(f"no container {name}")


def env_of(job: dict[str, Any], name: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(job, name)["env"] if "value" in e}


def transform_config(job: dict[str, Any]) -> TransformConfig:
    return TransformConfig.model_validate_json(env_of(job, "transformer")[TRANSFORM_CONFIG_ENV])


def test_an_indexed_job_runs_one_pod_per_instance_named_after_the_transform() -> None:
    job = build()
    meta = job["metadata"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert (meta["name"], meta["namespace"]) == ("bank-test", "ml")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kubemaker.io/v1alpha1",
            "kind": "BatchTransform",
            "name": "bank-test",
            "uid": "bt-1234",
            "controller": True,
        }
    ]
    assert meta["labels"][LABEL_BATCH_TRANSFORM] == "bank-test"
    assert naming.LABEL_KUEUE_QUEUE not in meta["labels"]
    assert meta["annotations"] == {
        "kubemaker.io/image": "registry.example/xgboost:1.7",
        "kubemaker.io/model-data-url": "s3://models/bank/model.tar.gz",
    }
    s = job["spec"]
    assert s["completionMode"] == "Indexed"
    assert s["completions"] == s["parallelism"] == 3
    assert s["backoffLimitPerIndex"] == 2
    assert s["maxFailedIndexes"] == 0
    assert s["podReplacementPolicy"] == "Failed"
    assert s["suspend"] is False
    pod = s["template"]
    assert pod["metadata"]["labels"] == meta["labels"]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_a_refused_record_fails_the_job_and_a_disruption_does_not_count() -> None:
    rules = build()["spec"]["podFailurePolicy"]["rules"]
    assert rules == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "transformer", "operator": "In", "values": [3]},
        },
        {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        },
    ]


def test_the_model_is_fetched_then_served_by_a_sidecar_before_the_transformer() -> None:
    job = build()
    spec = pod_spec(job)
    assert [c["name"] for c in spec["initContainers"]] == ["model", "model-server"]
    assert [c["name"] for c in spec["containers"]] == ["transformer"]
    fetch = container(job, "model")
    assert fetch["image"] == CONFIG.images.agent
    assert fetch["args"] == [
        "fetch-model",
        "--uri",
        "s3://models/bank/model.tar.gz",
        "--dest",
        "/opt/ml/model",
    ]
    assert "restartPolicy" not in fetch
    server = container(job, "model-server")
    assert server["image"] == "registry.example/xgboost:1.7"
    assert server["args"] == ["serve"]
    assert server["restartPolicy"] == "Always"  # a native sidecar
    probe = server["startupProbe"]
    assert probe["httpGet"] == {"path": "/ping", "port": 8080}
    # SageMaker's 600 s for the first /ping answer.
    assert probe["periodSeconds"] * probe["failureThreshold"] == 600
    assert server["volumeMounts"] == [
        {"name": "model", "mountPath": "/opt/ml/model", "readOnly": True}
    ]
    transformer = container(job, "transformer")
    assert transformer["image"] == CONFIG.images.agent
    assert transformer["args"] == ["transform"]
    assert transformer["ports"] == [{"name": "metrics", "containerPort": 9102}]
    assert {v["name"] for v in spec["volumes"]} == {"model", "tmp"}


def test_the_transformer_is_told_the_spec_and_the_instance_count() -> None:
    job = build(make_spec(instances=4, maxPayloadInMB=6, batchStrategy="MultiRecord"))
    settings = transform_config(job)
    assert settings.job_name == "bank-test"
    assert settings.instance_count == 4
    assert (settings.input_uri, settings.output_uri) == (
        "s3://data/bank/test/",
        "s3://data/bank/out/",
    )
    assert (settings.content_type, settings.split_type, settings.assemble_with) == (
        "text/csv",
        "Line",
        "Line",
    )
    assert (settings.batch_strategy, settings.max_payload_in_mb) == ("MultiRecord", 6)
    assert settings.server_url == "http://127.0.0.1:8080"
    assert env_of(job, "transformer")["KUBEMAKER_METRICS_PORT"] == "9102"


def test_the_server_gets_the_batch_environment_over_the_models() -> None:
    spec = make_spec(
        maxPayloadInMB=6,
        batchStrategy="MultiRecord",
        maxConcurrentTransforms=4,
        environment={"MODEL_THREADS": "8"},
    )
    env = env_of(build(spec), "model-server")
    assert env["SAGEMAKER_BATCH"] == "true"
    assert env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "6"
    assert env["SAGEMAKER_BATCH_STRATEGY"] == "MULTI_RECORD"
    assert env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] == "4"
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"  # the model's own
    assert env["MODEL_THREADS"] == "8"  # the spec's environment wins
    assert "SM_NUM_GPUS" not in env
    assert "SAGEMAKER_BATCH" not in env_of(build(spec), "transformer")


def test_pvc_inputs_and_outputs_are_mounted_into_the_transformer_once_per_claim() -> None:
    spec = make_spec(
        transformInput={"uri": "pvc://bank-data/test/", "contentType": "text/csv"},
        transformOutput={"s3OutputPath": "pvc://bank-data/out/"},
    )
    job = build(spec)
    root = transform_config(job).storage.pvc_root
    assert root == "/kubemaker/pvc"
    mounts = container(job, "transformer")["volumeMounts"]
    assert {"name": "pvc-bank-data", "mountPath": f"{root}/bank-data"} in mounts
    claims = [v for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        {"name": "pvc-bank-data", "persistentVolumeClaim": {"claimName": "bank-data"}}
    ]
    # The server reads only the model.
    assert [m["name"] for m in container(job, "model-server")["volumeMounts"]] == ["model"]

    two = build(
        make_spec(
            transformInput={"uri": "pvc://bank-data/test/"},
            transformOutput={"s3OutputPath": "pvc://results/out/"},
        )
    )
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod_spec(two)["volumes"][2:]] == [
        "bank-data",
        "results",
    ]
    assert [m["mountPath"] for m in container(two, "transformer")["volumeMounts"]] == [
        "/tmp",
        "/kubemaker/pvc/bank-data",
        "/kubemaker/pvc/results",
    ]


def test_s3_inputs_and_outputs_mount_no_claim() -> None:
    job = build()
    assert not any("persistentVolumeClaim" in v for v in pod_spec(job)["volumes"])
    assert container(job, "transformer")["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_a_gpu_instance_gives_its_gpus_to_the_model_server() -> None:
    job = build(make_spec(instance_type="ml.p3.2xlarge"))
    server = container(job, "model-server")
    assert env_of(job, "model-server")["SM_NUM_GPUS"] == "1"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["resources"]["requests"]["cpu"] == "8"
    # The transformer is small, whatever the instance.
    transformer = container(job, "transformer")
    assert "nvidia.com/gpu" not in transformer["resources"].get("limits", {})
    assert pod_spec(job)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(job)[
        "tolerations"
    ]


def test_a_queue_name_submits_the_job_suspended_to_kueue() -> None:
    job = build(make_spec(queueName="team-a"))
    assert job["metadata"]["labels"][naming.LABEL_KUEUE_QUEUE] == "team-a"
    assert job["spec"]["suspend"] is True
    # Kueue reads the label on the Job; the pods do not need it.
    assert naming.LABEL_KUEUE_QUEUE not in job["spec"]["template"]["metadata"]["labels"]


def test_pod_overrides_add_labels_but_cannot_replace_the_operators_own() -> None:
    spec = make_spec(
        podOverrides={
            "labels": {LABEL_BATCH_TRANSFORM: "someone-else", "team": "risk"},
            "annotations": {"kubemaker.io/image": "spoofed", "owner": "risk@example.com"},
        }
    )
    template = build(spec)["spec"]["template"]["metadata"]
    assert template["labels"][LABEL_BATCH_TRANSFORM] == "bank-test"
    assert template["labels"]["team"] == "risk"
    assert template["annotations"]["kubemaker.io/image"] == "registry.example/xgboost:1.7"
    assert template["annotations"]["owner"] == "risk@example.com"
