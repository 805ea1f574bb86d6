# Prometheus from Debian's package, for the CPU override of the compose stack
# (deploy/compose/docker-compose.cpu.yml) where prom/prometheus cannot be pulled.  The
# configuration is mounted at /etc/prometheus/prometheus.yml as in prom/prometheus; the
# data lives in the container (no volume: `docker compose down` leaves nothing behind).
#
#   docker build -f deploy/docker/prometheus.Dockerfile -t parm-prometheus:debian .
#
# BASE: any Debian bookworm image (`make images` passes a local one where Docker Hub
# cannot be reached; see deploy/engine/engine.sh).
ARG BASE=debian:bookworm-slim
FROM ${BASE}

RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown prometheus:prometheus /prometheus

USER prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
