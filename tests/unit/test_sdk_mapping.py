"""The SDK's calls mapped to kubemaker objects: what ``fit``, a tuner, ``deploy`` and a
transformer would create, judged by the API's own models, with v1 and v2 names."""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import warnings
from pathlib import Path
from typing import Any

import pytest

import kubemaker.sdk as sagemaker
from kubemaker.sdk import _manifests, image_uris
from kubemaker.sdk._args import UnsupportedArgument
from kubemaker.sdk.estimator import Estimator, check_object, encode_hyperparameter, tag_labels
from kubemaker.sdk.inputs import TrainingInput, channels, s3_input
from kubemaker.sdk.mxnet import MXNet
from kubemaker.sdk.predictor import Predictor, RealTimePredictor
from kubemaker.sdk.serializers import CSVSerializer
from kubemaker.sdk.session import LocalSession, Session
from kubemaker.sdk.transformer import Transformer
from kubemaker.sdk.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
    TuningJobCompletionCriteriaConfig,
    WarmStartConfig,
)
from kubemaker.sdk.utils import name_from_base, pack_source
from kubemaker.sdk.xgboost import XGBoost

SAGEMAKER_XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
DATA = "s3://bucket/bank"


@pytest.fixture
def session(tmp_path: Path) -> LocalSession:
    return LocalSession(local_workdir=tmp_path / "work")


def cluster_estimator(**kwargs: Any) -> Estimator:
    """An estimator for a cluster, with storage given so no cluster is asked."""
    params: dict[str, Any] = {
        "instance_count": 1,
        "instance_type": "ml.m5.xlarge",
        "output_path": f"{DATA}/output",
        "sagemaker_session": Session(s3_endpoint_url="http://127.0.0.1:1", namespace="ml"),
    }
    params.update(kwargs)
    return Estimator(image_uris.retrieve("xgboost", "us-east-1", "1.7-1"), **params)


def spec_of(estimator: Any, inputs: Any = None, name: str = "job") -> dict[str, Any]:
    manifest = estimator.training_job_manifest(name, inputs)
    return dict(manifest["spec"])


# --- estimators ------------------------------------------------------------------------


def test_a_sagemaker_image_uri_runs_the_built_in_algorithm_with_a_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "kubemaker.sdk"):
        xgb = cluster_estimator()
        explicit = Estimator(
            SAGEMAKER_XGBOOST,
            instance_count=1,
            instance_type="ml.m5.xlarge",
            output_path=f"{DATA}/output",
            sagemaker_session=xgb.sagemaker_session,
        )
    assert spec_of(explicit)["algorithmSpecification"] == {
        "algorithmName": "xgboost",
        "trainingInputMode": "File",
    }
    assert spec_of(xgb)["algorithmSpecification"]["algorithmName"] == "xgboost"
    assert any("sagemaker-xgboost:1.7-1" in r.getMessage() for r in caplog.records)


def test_v1_and_v2_names_give_the_same_job_and_v1_warns_at_the_callers_line() -> None:
    v2 = cluster_estimator(instance_count=2, volume_size=50, max_run=600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v1 = Estimator(
            SAGEMAKER_XGBOOST,
            train_instance_count=2,
            train_instance_type="ml.m5.xlarge",
            train_volume_size=50,
            train_max_run=600,
            output_path=f"{DATA}/output",
            sagemaker_session=v2.sagemaker_session,
        )
    assert spec_of(v1) == spec_of(v2)
    assert spec_of(v1)["resourceConfig"] == {
        "instanceType": "ml.m5.xlarge",
        "instanceCount": 2,
        "volumeSizeInGB": 50,
    }
    renamed = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert {str(w.message).split(":")[1].split()[1] for w in renamed} == {
        "train_instance_count",
        "train_instance_type",
        "train_volume_size",
        "train_max_run",
    }
    assert {w.filename for w in renamed} == {__file__}


def test_both_names_of_one_argument_are_refused() -> None:
    with (
        pytest.raises(TypeError, match="instance_count is given twice"),
        pytest.warns(FutureWarning),
    ):
        cluster_estimator(train_instance_count=2)


def test_an_unknown_argument_is_named_with_the_closest_known_one() -> None:
    with pytest.raises(TypeError, match=r"instance_cuont \(did you mean instance_count\?\)"):
        cluster_estimator(instance_cuont=2)


def test_an_unsupported_sagemaker_argument_says_what_to_use_instead() -> None:
    with pytest.raises(UnsupportedArgument, match=r"subnets.*NetworkPolicy"):
        cluster_estimator(subnets=["subnet-1"])
    # SageMaker's default for it is accepted: nothing is asked for.
    assert spec_of(cluster_estimator(subnets=None, enable_network_isolation=False))


def test_instance_type_is_required() -> None:
    with pytest.raises(ValueError, match=r"instance_type is required.*'local'"):
        Estimator(SAGEMAKER_XGBOOST, instance_count=1)


def test_role_names_a_service_account_or_is_noted_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert spec_of(cluster_estimator(role="trainer"))["podOverrides"] == {
        "serviceAccountName": "trainer"
    }
    with caplog.at_level(logging.WARNING, "kubemaker.sdk"):
        spec = spec_of(cluster_estimator(role="arn:aws:iam::111122223333:role/SageMakerRole"))
    assert "podOverrides" not in spec
    assert any("not a ServiceAccount name" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("gbtree", "gbtree"), (0.1, "0.1"), (100, "100"), (True, "true"), ([1, 2], "[1, 2]")],
)
def test_hyperparameters_are_strings_the_containers_decode(value: Any, encoded: str) -> None:
    assert encode_hyperparameter(value) == encoded


def test_every_supported_argument_reaches_the_spec() -> None:
    xgb = cluster_estimator(
        hyperparameters={"num_round": 10},
        metric_definitions=[{"Name": "validation:auc", "Regex": "auc:([0-9.]+)"}],
        use_spot_instances=True,
        max_run=600,
        max_wait=1200,
        checkpoint_s3_uri=f"{DATA}/checkpoints",
        checkpoint_local_path="/opt/ml/checkpoints",
        environment={"OMP_NUM_THREADS": "2"},
        max_retry_attempts=2,
        input_mode="Pipe",
        model_uri=f"{DATA}/warm/model.tar.gz",
        tags=[{"Key": "team", "Value": "ml"}, {"Key": "cost center", "Value": "R&D 7"}],
        pod_overrides={"nodeSelector": {"pool": "cpu"}},
    )
    xgb.set_hyperparameters(eta=0.2)
    manifest = xgb.training_job_manifest("bank", {"train": f"{DATA}/train"})
    spec = manifest["spec"]
    assert spec["hyperParameters"] == {"num_round": "10", "eta": "0.2"}
    assert spec["algorithmSpecification"]["metricDefinitions"] == [
        {"name": "validation:auc", "regex": "auc:([0-9.]+)"}
    ]
    assert spec["algorithmSpecification"]["trainingInputMode"] == "Pipe"
    assert spec["enableManagedSpotTraining"] is True
    assert spec["stoppingCondition"] == {"maxRuntimeInSeconds": 600, "maxWaitTimeInSeconds": 1200}
    assert spec["checkpointConfig"] == {
        "s3Uri": f"{DATA}/checkpoints",
        "localPath": "/opt/ml/checkpoints",
    }
    assert spec["environment"] == {"OMP_NUM_THREADS": "2"}
    assert spec["retryStrategy"] == {"maximumRetryAttempts": 2}
    assert spec["inputDataConfig"] == [
        {"channelName": "train", "uri": f"{DATA}/train"},
        {"channelName": "model", "uri": f"{DATA}/warm/model.tar.gz"},
    ]
    assert spec["outputDataConfig"] == {"s3OutputPath": f"{DATA}/output"}
    assert spec["podOverrides"] == {"nodeSelector": {"pool": "cpu"}}
    assert manifest["metadata"] == {
        "name": "bank",
        "labels": {"team": "ml"},
        "annotations": {"cost center": "R&D 7"},
    }


def test_a_spec_the_api_refuses_fails_before_anything_is_created() -> None:
    xgb = cluster_estimator(max_run=3600, max_wait=60, use_spot_instances=True)
    with pytest.raises(ValueError, match="maxWaitTimeInSeconds"):
        xgb.training_job_manifest("bank", f"{DATA}/train")
    with pytest.raises(ValueError, match=r"metadata\.name"):
        cluster_estimator().training_job_manifest("Not_A_Name", f"{DATA}/train")


def test_inputs_take_sagemakers_shapes() -> None:
    assert channels(f"{DATA}/train") == [{"channelName": "training", "uri": f"{DATA}/train"}]
    sharded = TrainingInput(
        f"{DATA}/train", distribution="ShardedByS3Key", content_type="text/csv", compression="Gzip"
    )
    assert channels({"train": sharded}) == [
        {
            "channelName": "train",
            "dataSource": {
                "s3DataSource": {
                    "s3Uri": f"{DATA}/train",
                    "s3DataType": "S3Prefix",
                    "s3DataDistributionType": "ShardedByS3Key",
                }
            },
            "contentType": "text/csv",
            "compressionType": "Gzip",
        }
    ]
    with pytest.warns(FutureWarning, match="s3_input has been renamed TrainingInput"):
        old = s3_input(f"{DATA}/train", content_type="csv")
    assert channels({"train": old}) == [
        {"channelName": "train", "uri": f"{DATA}/train", "contentType": "csv"}
    ]
    with pytest.raises(UnsupportedArgument, match="ManifestFile"):
        TrainingInput(f"{DATA}/manifest", s3_data_type="ManifestFile")
    with pytest.raises(TypeError, match=r"inputs\['train'\] must be a URI"):
        channels({"train": 3})


def test_local_instance_types_run_here_and_the_cluster_needs_shared_storage(
    session: LocalSession, tmp_path: Path
) -> None:
    local = Estimator(SAGEMAKER_XGBOOST, instance_count=1, instance_type="local")
    assert isinstance(local.sagemaker_session, LocalSession)
    spec = spec_of(Estimator(SAGEMAKER_XGBOOST, instance_type="local", sagemaker_session=session))
    assert spec["resourceConfig"]["instanceType"] == "local"
    assert spec["outputDataConfig"]["s3OutputPath"] == (
        (tmp_path / "work" / "buckets" / "kubemaker-default").resolve().as_uri()
    )
    with pytest.raises(ValueError, match="local_gpu runs one instance"):
        Estimator(SAGEMAKER_XGBOOST, instance_count=2, instance_type="local_gpu")
    # A plain Session with nothing configured keeps data locally: not for a cluster job.
    directory = Session(local_workdir=tmp_path / "work")
    directory._store = session.store
    on_cluster = Estimator(
        SAGEMAKER_XGBOOST, instance_type="ml.m5.xlarge", sagemaker_session=directory
    )
    with pytest.raises(ValueError, match="cluster's pods cannot read"):
        on_cluster.training_job_manifest("bank", f"{DATA}/train")


# --- framework estimators --------------------------------------------------------------


def archive_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(tar.getnames())


def test_source_dir_is_packed_as_sagemaker_packs_it(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "lib").mkdir(parents=True)
    (code / "train.py").write_text("print('hi')\n")
    (code / "lib" / "util.py").write_text("")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "helpers.py").write_text("")

    archive, entry = pack_source("train.py", str(code), [str(shared)])
    assert entry == "train.py"
    assert archive_names(archive) == ["lib/util.py", "shared/helpers.py", "train.py"]
    # The same code packs to the same bytes: a rerun uploads nothing new.
    assert pack_source("train.py", str(code), [str(shared)])[0] == archive

    alone, entry = pack_source(str(code / "train.py"), None)
    assert (archive_names(alone), entry) == (["train.py"], "train.py")
    with pytest.raises(FileNotFoundError, match="not a file under source_dir"):
        pack_source("missing.py", str(code))


def test_mxnet_uploads_its_code_beside_the_job_and_names_the_framework(
    session: LocalSession, tmp_path: Path
) -> None:
    script = tmp_path / "mnist.py"
    script.write_text("def train(**kwargs): pass\n")
    with pytest.warns(FutureWarning):
        mxnet = MXNet(
            str(script),
            role=None,
            train_instance_count=1,
            train_instance_type="local",
            framework_version="1.9.1",
            py_version="py3",
            hyperparameters={"learning_rate": 0.1, "optimizer": "sgd"},
            distributions={"parameter_server": {"enabled": True}},
            sagemaker_session=session,
        )
    spec = spec_of(mxnet, name="mnist-1")
    algorithm = spec["algorithmSpecification"]
    bucket = (tmp_path / "work" / "buckets" / "kubemaker-default").resolve()
    assert algorithm == {
        "framework": "mxnet",
        "entryPoint": "mnist.py",
        "sourceDir": (bucket / "mnist-1" / "source" / "sourcedir.tar.gz").as_uri(),
        "frameworkVersion": "1.9.1",
        "trainingInputMode": "File",
    }
    assert spec["hyperParameters"] == {"learning_rate": "0.1", "optimizer": "sgd"}
    mxnet.container_log_level = logging.DEBUG
    assert spec_of(mxnet, name="mnist-2")["hyperParameters"] == {
        "learning_rate": "0.1",
        "optimizer": "sgd",
        "sagemaker_container_log_level": "10",
    }
    uploaded = (bucket / "mnist-1" / "source" / "sourcedir.tar.gz").read_bytes()
    assert archive_names(uploaded) == ["mnist.py"]
    with pytest.raises(UnsupportedArgument, match="mpi"):
        MXNet(str(script), instance_type="local", distribution={"mpi": {"enabled": True}})


def test_xgboost_script_mode_and_a_source_dir_already_uploaded() -> None:
    xgb = XGBoost(
        "train.py",
        framework_version="1.7-1",
        source_dir="s3://bucket/code/sourcedir.tar.gz",
        instance_type="ml.m5.xlarge",
        output_path=f"{DATA}/output",
        sagemaker_session=Session(s3_endpoint_url="http://127.0.0.1:1"),
    )
    assert spec_of(xgb)["algorithmSpecification"] == {
        "framework": "xgboost",
        "entryPoint": "train.py",
        "sourceDir": "s3://bucket/code/sourcedir.tar.gz",
        "frameworkVersion": "1.7-1",
        "trainingInputMode": "File",
    }


def test_a_framework_image_needs_the_framework_estimator() -> None:
    with pytest.raises(ValueError, match=r"kubemaker.sdk.mxnet.\* with entry_point"):
        Estimator(
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-training:1.9.0-cpu-py38",
            instance_type="local",
        )


# --- names -----------------------------------------------------------------------------


def test_generated_names_are_unique_dns_labels_within_the_kinds_limits() -> None:
    names = {name_from_base("Sagemaker_XGBoost/Training", max_length=32, short=True) for _ in "ab"}
    assert len(names) == 2
    for name in names:
        assert len(name) <= 32
        assert re.fullmatch(r"sagemaker-xgb[a-z0-9-]*[a-z0-9]", name), name
    long = name_from_base("x" * 80)
    assert len(long) <= 52 and long[0] == "x"


# --- tuner -----------------------------------------------------------------------------


def test_the_tuner_maps_its_ranges_and_keeps_the_rest_static() -> None:
    xgb = cluster_estimator(hyperparameters={"num_round": 100, "eta": 0.2, "booster": "gbtree"})
    tuner = HyperparameterTuner(
        xgb,
        "validation:auc",
        {
            "eta": ContinuousParameter(0.05, 0.5, "Logarithmic"),
            "max_depth": IntegerParameter(3, 10),
            "booster": CategoricalParameter(["gbtree", "dart"]),
        },
        metric_definitions=[{"Name": "validation:auc", "Regex": "auc:([0-9.]+)"}],
        max_jobs=20,
        max_parallel_jobs=2,
        random_seed=42,
        early_stopping_type="Auto",
        completion_criteria_config=TuningJobCompletionCriteriaConfig(
            max_number_of_training_jobs_not_improving=5, target_objective_metric_value=0.95
        ),
        warm_start_config=WarmStartConfig("IdenticalDataAndAlgorithm", parents={"earlier"}),
    )
    spec = tuner.tuning_spec("bank-tune", {"train": f"{DATA}/train"})
    check_object(_manifests.resource("TuningJob", "bank-tune", spec))
    config = spec["hyperParameterTuningJobConfig"]
    assert config["parameterRanges"] == {
        "continuousParameterRanges": [
            {"name": "eta", "minValue": 0.05, "maxValue": 0.5, "scalingType": "Logarithmic"}
        ],
        "integerParameterRanges": [
            {"name": "max_depth", "minValue": 3, "maxValue": 10, "scalingType": "Auto"}
        ],
        "categoricalParameterRanges": [{"name": "booster", "values": ["gbtree", "dart"]}],
    }
    assert config["resourceLimits"] == {"maxParallelTrainingJobs": 2, "maxNumberOfTrainingJobs": 20}
    assert config["hyperParameterTuningJobObjective"] == {
        "type": "Maximize",
        "metricName": "validation:auc",
    }
    assert config["trainingJobEarlyStoppingType"] == "Auto"
    assert config["randomSeed"] == 42
    assert config["tuningJobCompletionCriteria"] == {
        "targetObjectiveMetricValue": 0.95,
        "bestObjectiveNotImproving": {"maxNumberOfTrainingJobsNotImproving": 5},
    }
    definition = spec["trainingJobDefinition"]
    assert definition["staticHyperParameters"] == {"num_round": "100"}
    assert "hyperParameters" not in definition
    assert definition["algorithmSpecification"]["metricDefinitions"] == [
        {"name": "validation:auc", "regex": "auc:([0-9.]+)"}
    ]
    assert spec["warmStartConfig"] == {
        "parentHyperParameterTuningJobs": [{"hyperParameterTuningJobName": "earlier"}],
        "warmStartType": "IdenticalDataAndAlgorithm",
    }


def test_the_tuner_defaults_to_one_job_as_sagemaker_and_grid_counts_its_own() -> None:
    ranges = {"booster": CategoricalParameter(["gbtree", "dart"])}
    one = HyperparameterTuner(cluster_estimator(), "validation:auc", ranges)
    assert one.tuning_spec("t")["hyperParameterTuningJobConfig"]["resourceLimits"] == {
        "maxParallelTrainingJobs": 1,
        "maxNumberOfTrainingJobs": 1,
    }
    grid = HyperparameterTuner(cluster_estimator(), "validation:auc", ranges, strategy="Grid")
    spec = grid.tuning_spec("t")
    assert "maxNumberOfTrainingJobs" not in spec["hyperParameterTuningJobConfig"]["resourceLimits"]
    check_object(_manifests.resource("TuningJob", "t", spec))
    with pytest.raises(TypeError, match="must be an IntegerParameter"):
        HyperparameterTuner(cluster_estimator(), "m", {"eta": (0.1, 0.2)}).tuning_spec("t")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="min_value 5 is above max_value 3"):
        IntegerParameter(5, 3)


# --- deploy and transform --------------------------------------------------------------


def test_the_endpoint_serves_the_jobs_model_as_one_variant() -> None:
    spec = _manifests.endpoint_spec({"trainingJobRef": {"name": "bank"}}, "ml.m5.large", 2, 600)
    manifest = _manifests.resource(
        "Endpoint", "bank", spec, tag_labels([{"Key": "a", "Value": "b"}])
    )
    check_object(manifest)
    assert manifest["spec"]["productionVariants"] == [
        {
            "variantName": "AllTraffic",
            "model": {"trainingJobRef": {"name": "bank"}},
            "instanceType": "ml.m5.large",
            "initialInstanceCount": 2,
            "containerStartupHealthCheckTimeoutInSeconds": 600,
        }
    ]
    assert manifest["metadata"]["labels"] == {"a": "b"}


def test_deploy_without_count_or_type_says_what_is_needed() -> None:
    xgb = cluster_estimator()
    xgb.latest_training_job = type("Job", (), {"name": "bank"})()  # type: ignore[assignment]
    with pytest.raises(ValueError, match="initial_instance_count and instance_type are required"):
        xgb.deploy(instance_type="ml.m5.large")
    with pytest.raises(UnsupportedArgument, match="accelerator_type"):
        xgb.deploy(1, "ml.m5.large", accelerator_type="ml.eia2.medium")


def test_the_transformer_maps_sagemakers_arguments() -> None:
    transformer = Transformer(
        "bank",
        2,
        "ml.m5.large",
        strategy="MultiRecord",
        assemble_with="Line",
        output_path=f"{DATA}/predictions",
        accept="text/csv",
        max_concurrent_transforms=4,
        max_payload=6,
        env={"MODEL_SERVER_TIMEOUT": "60"},
        sagemaker_session=Session(s3_endpoint_url="http://127.0.0.1:1"),
    )
    spec = transformer.transform_spec(
        "bank-batch",
        f"{DATA}/test",
        content_type="text/csv",
        split_type="Line",
        input_filter="$[1:]",
        join_source="Input",
        output_filter="$[0,-1]",
        model_client_config={"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
    )
    check_object(_manifests.resource("BatchTransform", "bank-batch", spec))
    assert spec == {
        "model": {"trainingJobRef": {"name": "bank"}},
        "transformInput": {"uri": f"{DATA}/test", "contentType": "text/csv", "splitType": "Line"},
        "transformOutput": {
            "s3OutputPath": f"{DATA}/predictions",
            "accept": "text/csv",
            "assembleWith": "Line",
        },
        "transformResources": {"instanceType": "ml.m5.large", "instanceCount": 2},
        "batchStrategy": "MultiRecord",
        "maxPayloadInMB": 6,
        "maxConcurrentTransforms": 4,
        "dataProcessing": {
            "inputFilter": "$[1:]",
            "outputFilter": "$[0,-1]",
            "joinSource": "Input",
        },
        "modelClientConfig": {"invocationsTimeoutInSeconds": 600, "invocationsMaxRetries": 1},
        "environment": {"MODEL_SERVER_TIMEOUT": "60"},
    }
    with pytest.raises(ValueError, match="unknown keys"):
        transformer.transform_spec("b", f"{DATA}/test", model_client_config={"Timeout": 1})
    with pytest.raises(UnsupportedArgument, match="ManifestFile"):
        transformer.transform(f"{DATA}/test.manifest", data_type="ManifestFile")


# --- predictor -------------------------------------------------------------------------


def test_a_v1_predictor_sends_data_as_it_is_and_takes_its_content_type() -> None:
    with pytest.warns(FutureWarning, match="RealTimePredictor has been renamed Predictor"):
        predictor = RealTimePredictor("bank", Session())
    assert predictor.serializer is None and predictor.content_type is None
    predictor.content_type = "text/csv"
    with pytest.warns(FutureWarning, match="csv_serializer is no longer in sagemaker>=2"):
        from kubemaker.sdk.predictor import csv_serializer
    predictor.serializer = csv_serializer
    assert predictor.content_type == "text/csv"
    v2 = Predictor("bank", Session(), serializer=CSVSerializer())
    assert (v2.content_type, v2.accept) == ("text/csv", "*/*")
    raw = Predictor("bank", Session(), endpoint_url="http://127.0.0.1:9")
    raw.serializer = None
    with pytest.raises(TypeError, match="bytes or str"):
        raw.predict([1, 2])


# --- session storage -------------------------------------------------------------------


def test_upload_and_download_keep_sagemakers_uris_and_layout(
    session: LocalSession, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.csv").write_text("1,2\n")
    (data / "b.csv").write_text("3,4\n")
    root = (tmp_path / "work" / "buckets").resolve()
    assert session.upload_data(str(data), key_prefix="bank") == (
        (root / "kubemaker-default" / "bank").as_uri()
    )
    assert session.upload_data(str(data / "b.csv"), bucket="other", key_prefix="x/") == (
        (root / "other" / "x" / "b.csv").as_uri()
    )
    assert sorted(session.list_s3_files("kubemaker-default", "bank/")) == [
        "bank/b.csv",
        "bank/train/a.csv",
    ]
    written = session.download_data(str(tmp_path / "back"), "kubemaker-default", "bank")
    assert sorted(Path(p).relative_to(tmp_path / "back").as_posix() for p in written) == [
        "bank/b.csv",
        "bank/train/a.csv",
    ]
    assert session.read_s3_file("other", "x/b.csv") == "3,4\n"
    with pytest.raises(FileNotFoundError):
        session.upload_data(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="leaves the bucket"):
        session.store.upload_bytes(b"", "kubemaker-default", "../../escape")


def test_get_execution_role_reads_the_service_account_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBEMAKER_ROLE", raising=False)
    assert sagemaker.get_execution_role() is None
    monkeypatch.setenv("KUBEMAKER_ROLE", "trainer")
    assert sagemaker.get_execution_role() == "trainer"


def test_the_operator_serving_the_namespace_gives_its_configuration() -> None:
    from kubemaker.sdk.session import choose_operator_config

    def document(endpoint: str, *watched: str) -> str:
        return json.dumps(
            {"storage": {"s3EndpointUrl": endpoint}, "watchNamespaces": list(watched)}
        )

    everywhere = document("http://everywhere")
    mine = document("http://mine", "ml", "other")
    theirs = document("http://theirs", "other")
    chosen = choose_operator_config([everywhere, "{not: [yaml", theirs, mine], "ml")
    assert chosen.storage.s3_endpoint_url == "http://mine"
    assert choose_operator_config([theirs, everywhere], "ml").storage.s3_endpoint_url == (
        "http://everywhere"
    )
    assert choose_operator_config([theirs], "ml").storage.s3_endpoint_url == ""
