# parm-base:bookworm, the local stand-in for python:3.11-slim where Docker Hub cannot be
# reached (deploy/engine/engine.sh builds it): Debian bookworm's python3 (3.11) in a virtual
# environment on PATH, so that `pip install` works as in the official image, and this
# machine's local CA certificates (its build context's certs/), so that pip and apt reach
# their servers through a proxy that presents its own CA.
ARG ROOTFS=parm-rootfs:bookworm
FROM ${ROOTFS}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends ca-certificates python3 python3-venv \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
# Bookworm's pip (23.0) reads certifi's bundle, not the system's, unless told.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
