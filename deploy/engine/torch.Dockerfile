# parm-base:torch-cpu: parm-base:bookworm with the CPU build of torch, installed from a
# wheelhouse on the build host (the build context) because the PyTorch CPU index cannot be
# reached and PyPI's torch is the CUDA build.  The wheel stays in the first stage, so the
# image carries the installed package only.
ARG BASE=parm-base:bookworm
FROM ${BASE} AS install
COPY torch-*.whl /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/torch-*.whl

FROM ${BASE}
COPY --from=install /opt/venv /opt/venv
