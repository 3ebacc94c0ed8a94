# Watchfloor's processes for docker-compose.yml: the worker (counting and detection agents), the gateway, the HTTP
# intake (python -m streams.intake), the Socrata poller (python -m streams.intake.poll) and the replay tool.
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
