# The kubemaker operator image.
#
#   docker build -t ghcr.io/kubemaker/operator:0.1.0 .
#
# Two stages: the first installs the operator's dependencies (the `operator` extra, no
# data-plane packages: no boto3, xgboost or mxnet) at the versions uv.lock pins, from
# requirements/operator.txt (exported from the lock, every file hash-checked), then the
# project itself into a virtualenv; the second copies only that virtualenv onto a slim
# Python. Plain pip and no BuildKit feature, so DOCKER_BUILDKIT=0 builds it too. The
# result runs as a non-root user and works with a read-only root filesystem: bytecode is
# compiled at build time and nothing is written at run time except to /tmp (an emptyDir
# in the chart), where the Kubernetes client may put certificate files from a kubeconfig.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kubemaker \
 && /opt/kubemaker/bin/pip install --upgrade pip setuptools wheel
WORKDIR /src
# Dependencies first, so that editing the code does not reinstall them. The file lists
# every package with its hashes, so --no-deps installs exactly it.
COPY requirements/operator.txt requirements/
RUN /opt/kubemaker/bin/pip install --require-hashes --no-deps -r requirements/operator.txt
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY images/kubemaker_runtime/ images/kubemaker_runtime/
RUN /opt/kubemaker/bin/pip install --no-deps . \
 && /opt/kubemaker/bin/pip check \
 && /opt/kubemaker/bin/python -m compileall -q /opt/kubemaker \
 && /opt/kubemaker/bin/kubemaker-operator --help > /dev/null \
 && /opt/kubemaker/bin/python -c "import kubemaker.runner, kubemaker.controllers.training, kubemaker.kube"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kubemaker-operator" \
      org.opencontainers.image.description="The SageMaker workflow as Kubernetes custom resources: the operator" \
      org.opencontainers.image.source="https://github.com/kubemaker/kubemaker" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kubemaker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/kubemaker /opt/kubemaker
# The numeric user the chart's securityContext names (runAsNonRoot needs a number).
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["kubemaker-operator"]
