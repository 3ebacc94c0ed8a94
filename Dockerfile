# The Watchfloor worker (counting and detection agents), the gateway and the replay tool, for docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY streams ./streams
COPY detectors ./detectors
COPY infra ./infra
COPY gateway ./gateway
RUN pip install --no-cache-dir . && useradd --create-home watchfloor
USER watchfloor
CMD ["python", "-m", "streams.runtime.worker", "-l", "info"]
