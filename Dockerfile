# syntax=docker/dockerfile:1
# The kubemaker operator image.
#
#   docker build -t ghcr.io/kubemaker/operator:0.1.0 .
#
# Two stages: the first builds the project's wheel and installs it with the operator's
# dependencies (no data-plane extras: no boto3, xgboost or mxnet) into a virtualenv;
# the second copies only that virtualenv onto a slim Python. The result runs as a
# non-root user and works with a read-only root filesystem: bytecode is compiled at
# build time and nothing is written at run time except to /tmp (an emptyDir in the
# chart), where the Kubernetes client may put certificate files from a kubeconfig.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kubemaker \
 && /opt/kubemaker/bin/pip install --upgrade pip setuptools wheel
WORKDIR /src
# Dependencies first, so that editing the code does not reinstall them.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN /opt/kubemaker/bin/pip install -r /tmp/requirements.txt
COPY operator/ operator/
COPY images/kubemaker_runtime/ images/kubemaker_runtime/
RUN /opt/kubemaker/bin/pip install --no-deps . \
 && /opt/kubemaker/bin/python -m compileall -q /opt/kubemaker \
 && /opt/kubemaker/bin/kubemaker-operator --help > /dev/null

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
