# A parm model container on CPU (the same server as model-cuda.Dockerfile, with the CPU
# build of torch).  Build from the repository root:
#
#   docker build -f deploy/docker/model-cpu.Dockerfile -t parm-model:cpu .
#
#   docker run -v BUNDLES:/bundles:ro -p 8001:8001 -p 8003:8003 -p 9102:9102 parm-model:cpu \
#     --bundle /bundles/digits-base --host 0.0.0.0 --port 8001 --stream-port 8003 \
#     --metrics-port 9102 --device cpu
#
# BASE: any image with python 3.11 and pip on PATH.  Torch comes from TORCH_INDEX (the
# PyTorch CPU index); with TORCH_INDEX empty, from the base image itself or else PyPI:
# `make images` passes a local base with the CPU build already installed where neither
# Docker Hub nor the PyTorch index can be reached (deploy/engine/engine.sh).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/parm

# The CPU build of torch, as the Makefile installs it for development.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "${TORCH_SPEC}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
RUN pip install \
    "numpy>=1.26" "grpcio>=1.60" "grpcio-health-checking>=1.60" "protobuf>=5.26" \
    "safetensors>=0.4" "uvloop>=0.19" "prometheus-client>=0.20"

COPY pyproject.toml README.md ./
COPY common common
COPY model_container model_container
COPY proto proto
RUN pip install --no-deps .

USER 65534
EXPOSE 8001 8003
ENTRYPOINT ["python", "-m", "model_container"]
CMD ["--help"]
