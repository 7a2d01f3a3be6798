# StreamRisk worker image: `docker build -t streamrisk .` then `docker run streamrisk worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build from a throwaway copy of the sources; only the installed package stays in the image.
COPY . /tmp/streamrisk-src
RUN pip install /tmp/streamrisk-src \
    && rm -rf /tmp/streamrisk-src

# Unprivileged runtime user owning the state directory (a volume in docker-compose.yml).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin streamrisk \
    && mkdir -p /data \
    && chown streamrisk:streamrisk /data
USER streamrisk
WORKDIR /home/streamrisk

ENV STREAMRISK_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 6066

ENTRYPOINT ["streamrisk"]
CMD ["worker"]
