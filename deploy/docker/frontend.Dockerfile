# The parm frontend: KServe v2 / Clipper REST on 8000, v2 gRPC on 8001, Prometheus /metrics
# on 8002.  Build from the repository root:
#
#   docker build -f deploy/docker/frontend.Dockerfile -t parm-frontend:latest .
#
# Run it with its configuration (models, bundle paths, instance addresses; see
# deploy/frontend_file.py) at /etc/parm/frontend.toml and the model bundles at /bundles:
#
#   docker run -v $PWD/frontend.toml:/etc/parm/frontend.toml:ro -v BUNDLES:/bundles:ro \
#     -p 8000-8002:8000-8002 parm-frontend:latest
#
# BASE: any image with python 3.11 and pip on PATH (`make images` passes a local Debian
# base where Docker Hub cannot be reached; see deploy/engine/engine.sh).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/parm

# The frontend never imports torch (it reads bundle manifests, not weights): the package
# goes in without its dependencies, then exactly what the frontend needs.  tests/deploy
# checks this list against pyproject.toml and the frontend's imports.
RUN pip install \
    "numpy>=1.26" "grpcio>=1.60" "grpcio-health-checking>=1.60" "protobuf>=5.26" \
    "uvloop>=0.19" "fastapi>=0.110" "uvicorn>=0.30" "httptools>=0.6" "prometheus-client>=0.20" \
    "tomli-w>=1.0"

# parm's command line reads every subcommand's options (bench and train included, argparse
# only); their heavy modules load only when those commands run.
COPY pyproject.toml README.md ./
COPY common common
COPY frontend frontend
COPY model_container model_container
COPY proto proto
COPY deploy deploy
COPY bench bench
COPY train train
COPY cli cli
RUN pip install --no-deps . && mkdir -p /etc/parm

USER 65534
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=2)"]
ENTRYPOINT ["parm", "frontend"]
CMD ["--config", "/etc/parm/frontend.toml"]
