# A parm model container on CUDA: one bundle served over v2 gRPC, framed TCP and
# Prometheus /metrics.  Build from the repository root:
#
#   docker build -f deploy/docker/model-cuda.Dockerfile -t parm-model:cuda .
#
# The bundle is mounted, not baked in; the GPU comes from the runtime (--gpus, or a
# compose/Kubernetes GPU reservation):
#
#   docker run --gpus device=0 -v BUNDLES:/bundles:ro -p 8001:8001 -p 8003:8003 -p 9102:9102 \
#     parm-model:cuda --bundle /bundles/digits-base --host 0.0.0.0 --port 8001 \
#     --stream-port 8003 --metrics-port 9102 --device cuda
#
# BASE: an image with python, pip and a CUDA build of torch.  TORCH_SPEC (empty: keep the
# base's torch) installs another, from TORCH_INDEX (e.g. https://download.pytorch.org/whl/cu124).
ARG BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/parm

# torch (with CUDA) comes with the base image unless TORCH_SPEC names another.
ARG TORCH_SPEC=
ARG TORCH_INDEX=
RUN if [ -n "$TORCH_SPEC" ]; then \
        pip install "$TORCH_SPEC" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}; fi
# the rest of what a container imports:
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
