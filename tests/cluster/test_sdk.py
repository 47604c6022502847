"""The Python SDK against the local control plane, with the operator under the chart's
ServiceAccount.

KWOK plays the pods (tests/cluster/kwok/stages/pod.yaml); the SDK does what a notebook
does: ``fit`` creates the TrainingJob and follows it to its end, ``deploy`` waits for
the Endpoint to be InService, ``delete_endpoint`` removes it, the tuner follows its
TuningJob and reads the trials. A prediction goes through the API server's service
proxy to a real model server process on this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from kubernetes.client.exceptions import ApiException

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    BUCKET,
    GROUP,
    KWOK,
    VERSION,
    Kube,
    free_port,
    model_uri,
    wait_for,
)

from kubemaker.sdk import Estimator, Predictor, Session, image_uris  # noqa: E402
from kubemaker.sdk.exceptions import ModelError, UnexpectedStatusException  # noqa: E402
from kubemaker.sdk.serializers import CSVSerializer  # noqa: E402
from kubemaker.sdk.tuner import (  # noqa: E402
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
)

if TYPE_CHECKING:
    from conftest import LocalCluster

pytestmark = pytest.mark.cluster
pytest_plugins = ("operator_harness",)

HYPERPARAMETERS = {"num_round": 10, "objective": "binary:logistic"}


@pytest.fixture
def session(cluster: LocalCluster, namespace: str) -> Session:
    return Session(namespace=namespace, kubeconfig=str(cluster.kubeconfig))


def estimator(session: Session, **annotations: str) -> Estimator:
    return Estimator(
        image_uris.retrieve("xgboost", "us-east-1", "1.7-1"),
        instance_count=1,
        instance_type="ml.m5.large",
        output_path=f"{BUCKET}/models",
        hyperparameters=HYPERPARAMETERS,
        sagemaker_session=session,
        pod_overrides={"annotations": {KWOK + k: v for k, v in annotations.items()}},
    )


def gone(kube: Kube, plural: str, name: str) -> bool:
    try:
        kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, plural, name)
    except ApiException as exc:
        return exc.status == 404
    return False


@pytest.mark.usefixtures("operator")
def test_fit_follows_the_job_then_deploy_and_delete_the_endpoint(
    session: Session, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    xgb = estimator(session, duration="2s")
    xgb.fit({"train": f"{BUCKET}/data/train"}, job_name="sdk-fit")

    printed = capsys.readouterr().out
    assert f"created TrainingJob {kube.namespace}/sdk-fit" in printed
    # SageMaker's fit prints each secondary status as the job reaches it.
    for phase in ("Starting", "Training", "Completed"):
        assert f" {phase} - " in printed or printed.rstrip().endswith(phase), printed
    job = kube.get("sdk-fit")
    assert job["spec"]["hyperParameters"] == {"num_round": "10", "objective": "binary:logistic"}
    assert job["spec"]["algorithmSpecification"]["algorithmName"] == "xgboost"
    assert xgb.model_data == model_uri("sdk-fit")

    attached = Estimator.attach("sdk-fit", sagemaker_session=session)
    assert attached.model_data == model_uri("sdk-fit")
    assert attached.hyperparameters() == {"num_round": "10", "objective": "binary:logistic"}

    predictor = xgb.deploy(1, "ml.m5.large", endpoint_name="sdk-bank")
    endpoint = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "endpoints", "sdk-bank"
    )
    assert endpoint["status"]["endpointStatus"] == "InService"
    variant = endpoint["spec"]["productionVariants"][0]
    assert variant["model"] == {"trainingJobRef": {"name": "sdk-fit"}}

    # UpdateEndpoint: the variant's count changes; the call returns once the operator has
    # rolled the new spec out (its status is for that generation).
    predictor.update_endpoint(initial_instance_count=2)
    endpoint = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "endpoints", "sdk-bank"
    )
    assert endpoint["spec"]["productionVariants"][0]["initialInstanceCount"] == 2
    assert endpoint["status"]["endpointStatus"] == "InService"
    assert endpoint["status"]["observedGeneration"] == endpoint["metadata"]["generation"]

    predictor.delete_endpoint()
    wait_for("the Endpoint to be deleted", lambda: gone(kube, "endpoints", "sdk-bank"), 60)


@pytest.mark.usefixtures("operator")
def test_a_failed_job_raises_with_its_failure_reason(session: Session, kube: Kube) -> None:
    xgb = estimator(session, duration="1s", **{"exit-code": "3", "message": "eta is negative"})
    with pytest.raises(UnexpectedStatusException) as raised:
        xgb.fit(f"{BUCKET}/data/train", job_name="sdk-bad")
    assert raised.value.actual_status == "Failed"
    assert "eta is negative" in str(raised.value)
    assert kube.status("sdk-bad")["trainingJobStatus"] == "Failed"


@pytest.mark.usefixtures("operator")
def test_the_tuner_follows_its_search_and_reads_the_trials(session: Session, kube: Kube) -> None:
    report = {
        "version": 2,
        "outcome": "Completed",
        "modelArtifacts": f"{BUCKET}/models/trial/output/model.tar.gz",
        "finalMetrics": {"validation:auc": 0.9},
    }
    xgb = estimator(session, duration="2s", **{"agent-report": json.dumps(report)})
    tuner = HyperparameterTuner(
        xgb,
        "validation:auc",
        {"eta": ContinuousParameter(0.1, 0.5), "max_depth": IntegerParameter(3, 9)},
        strategy="Random",
        max_jobs=3,
        max_parallel_jobs=2,
        random_seed=7,
    )
    tuner.fit({"train": f"{BUCKET}/data/train"}, job_name="sdk-tune")

    assert tuner.describe()["status"]["hyperParameterTuningJobStatus"] == "Completed"
    attached = HyperparameterTuner.attach("sdk-tune", session)
    assert attached.best_training_job() == tuner.best_training_job()
    assert attached.estimator.hyperparameters() == {
        "num_round": "10",
        "objective": "binary:logistic",
    }
    trials = [f"sdk-tune-{i:03d}" for i in (1, 2, 3)]
    assert tuner.best_training_job() in trials
    rows = tuner.analytics().rows()
    assert [r["TrainingJobName"] for r in rows] == trials
    assert all(r["FinalObjectiveValue"] == 0.9 for r in rows)
    assert all(3 <= r["max_depth"] <= 9 and 0.1 <= r["eta"] <= 0.5 for r in rows)
    frame = tuner.analytics().dataframe()
    assert list(frame["TrainingJobName"]) == trials
    assert {"eta", "max_depth", "FinalObjectiveValue", "TrainingElapsedTimeSeconds"} <= set(
        frame.columns
    )
    assert (frame["TrainingElapsedTimeSeconds"] >= 0).all()
    spec = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "tuningjobs", "sdk-tune"
    )["spec"]
    assert spec["trainingJobDefinition"]["staticHyperParameters"] == {
        "num_round": "10",
        "objective": "binary:logistic",
    }


# --- a prediction through the service proxy, to a real model server ---------------------


def host_address() -> str:
    """This machine's non-loopback IPv4 address (the API server refuses to proxy to a
    loopback one). No packet is sent: a UDP connect only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[int]:
    """The XGBoost model server, serving a small real model on all interfaces."""
    import xgboost

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] > 0).astype(float)
    booster = xgboost.train(
        {"objective": "binary:logistic"}, xgboost.DMatrix(features, labels), num_boost_round=5
    )
    (tmp_path / "model").mkdir()
    # Saved with the format in the name, then named as the image expects it.
    booster.save_model(tmp_path / "model" / "xgboost-model.ubj")
    (tmp_path / "model" / "xgboost-model.ubj").rename(tmp_path / "model" / "xgboost-model")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "serve"],
        env={
            **os.environ,
            "SAGEMAKER_BASE_DIR": str(tmp_path),
            "SAGEMAKER_BIND_TO_PORT": str(port),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import urllib.request

        def pings() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for("the model server to answer /ping", pings, 60)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.usefixtures("chart")
def test_predict_reaches_the_model_through_the_service_proxy(
    session: Session, kube: Kube, model_server: int
) -> None:
    # The operator is not running: the Endpoint's status and a selector-less Service
    # stand in for its fleet. The API server proxies only to an address that a pod of
    # the Service's endpoints has (its check against forged endpoints), so a pod that no
    # kubelet runs is given this machine's address, where the real model server listens.
    address = host_address()
    kube.core.create_namespaced_pod(
        kube.namespace,
        {
            "metadata": {"name": "stand-in"},
            "spec": {
                "nodeName": "no-such-node",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "server",
                        "image": "none",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        },
    )
    kube.core.patch_namespaced_pod_status(
        "stand-in",
        kube.namespace,
        {"status": {"podIP": address, "podIPs": [{"ip": address}]}},
    )
    kube.core.create_namespaced_service(
        kube.namespace,
        {"metadata": {"name": "proxied"}, "spec": {"ports": [{"port": 8080, "targetPort": 8080}]}},
    )
    target = {"kind": "Pod", "name": "stand-in", "namespace": kube.namespace}
    kube.core.create_namespaced_endpoints(
        kube.namespace,
        {
            "metadata": {"name": "proxied"},
            "subsets": [
                {
                    "addresses": [{"ip": address, "targetRef": target}],
                    "ports": [{"port": model_server}],
                }
            ],
        },
    )
    kube.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        kube.namespace,
        "endpoints",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Endpoint",
            "metadata": {"name": "proxied"},
            "spec": {
                "productionVariants": [
                    {
                        "variantName": "AllTraffic",
                        "model": {"trainingJobRef": {"name": "absent"}},
                        "instanceType": "ml.m5.large",
                        "initialInstanceCount": 1,
                    }
                ]
            },
        },
    )
    kube.custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        kube.namespace,
        "endpoints",
        "proxied",
        {
            "status": {
                "endpointStatus": "InService",
                "endpointUrl": f"http://proxied.{kube.namespace}.svc:8080",
            }
        },
    )

    predictor = Predictor("proxied", session, serializer=CSVSerializer())

    def answers() -> Any:
        try:
            return predictor.predict([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
        except ModelError as exc:  # the Service's endpoints may take a moment to resolve
            return None if exc.status_code == 503 else exc

    answer = wait_for("a prediction through the proxy", answers, 60)
    assert not isinstance(answer, Exception), answer
    scores = [float(s) for s in answer.decode().replace("\n", ",").strip(",").split(",")]
    assert scores[0] > 0.5 > scores[1]

    with pytest.raises(ModelError) as refused:
        predictor.predict("not,a,number,row")
    assert 400 <= refused.value.status_code < 500


@pytest.mark.usefixtures("operator")
def test_the_transformer_follows_its_batch_transform_to_the_end(
    session: Session, kube: Kube
) -> None:
    xgb = estimator(session, duration="1s")
    xgb.fit(f"{BUCKET}/data/train", job_name="sdk-model", logs=False)
    transformer = xgb.transformer(1, "ml.m5.large", output_path=f"{BUCKET}/predictions")
    transformer.transform(
        f"{BUCKET}/data/test", content_type="text/csv", split_type="Line", job_name="sdk-batch"
    )
    status = transformer.describe()["status"]
    assert status["transformJobStatus"] == "Completed"
    spec = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "batchtransforms", "sdk-batch"
    )["spec"]
    assert spec["model"] == {"trainingJobRef": {"name": "sdk-model"}}
    assert transformer.output == f"{BUCKET}/predictions"


def test_storage_comes_from_the_operators_configuration_and_its_secret(
    cluster: LocalCluster, kube: Kube, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Session given nothing finds S3 where the operator serving its namespace keeps
    it: the chart's ConfigMap and the credentials Secret it names (a real S3 API, moto's
    server on loopback)."""
    from moto.server import ThreadedMotoServer

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    # No credentials of this machine's own: only the Secret can give them.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        config = {
            "storage": {"s3EndpointUrl": f"http://127.0.0.1:{port}", "credentialsSecret": "s3"},
            "watchNamespaces": [kube.namespace],
        }
        kube.core.create_namespaced_config_map(
            kube.namespace,
            {
                "metadata": {
                    "name": "kubemaker-config",
                    "labels": {
                        "app.kubernetes.io/part-of": "kubemaker",
                        "app.kubernetes.io/component": "operator",
                    },
                },
                "data": {"config.yaml": json.dumps(config)},
            },
        )
        kube.core.create_namespaced_secret(
            kube.namespace,
            {
                "metadata": {"name": "s3"},
                "stringData": {"AWS_ACCESS_KEY_ID": "owner", "AWS_SECRET_ACCESS_KEY": "secret"},
            },
        )
        data = tmp_path / "train.csv"
        data.write_text("1,2,3\n")
        session = Session(namespace=kube.namespace, kubeconfig=str(cluster.kubeconfig))
        uri = session.upload_data(str(data), key_prefix="bank/train")
        assert uri == f"s3://kubemaker-{kube.namespace}/bank/train/train.csv"

        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="owner",
            aws_secret_access_key="secret",
            region_name="us-east-1",
        )
        body = client.get_object(Bucket=f"kubemaker-{kube.namespace}", Key="bank/train/train.csv")
        assert body["Body"].read() == b"1,2,3\n"
        credentials = session.store.client._request_signer._credentials  # type: ignore[attr-defined]
        assert credentials.access_key == "owner"
    finally:
        server.stop()
